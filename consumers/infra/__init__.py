"""Infrastructure shared by every process: settings, clock, PostgreSQL, the process's clients, keys."""
