"""Topic fan-out: an event addressed to a topic becomes one event per subscriber."""
