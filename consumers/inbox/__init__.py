"""The in-app inbox beyond delivery: read receipts and the janitor that archives old rows."""
