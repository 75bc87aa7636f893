"""Notification workflows: per-route steps (parse, presets, explain) and their executor."""
