"""The fallback consumer: retries, push→email escalation, the in-app digest, the critical watch."""
