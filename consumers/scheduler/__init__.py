"""Durable timers in PostgreSQL (released with FOR UPDATE SKIP LOCKED) and the retry schedule."""
