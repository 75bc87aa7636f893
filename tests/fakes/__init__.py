"""Fakes of external providers: real HTTP servers on 127.0.0.1 (never patches of Herald code)."""
