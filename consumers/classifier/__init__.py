"""The classifier: event type → urgency tier → channels, with preferences, quiet hours and rate limits."""
