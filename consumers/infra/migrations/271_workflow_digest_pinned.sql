-- A route's digest keeps a copy of the route as its first item joined (consumers/workflow/pinned.py):
-- its digest step (channel, max_items) and the tier, category and lane it is sent with. Null on
-- digests from before this migration: they use their route's digest step, as before.
-- A nullable column without a default: a catalogue change only (no table rewrite); a migration
-- of its own, so no other table's lock is held while it waits for this one's.
ALTER TABLE herald_workflow_digests ADD COLUMN pinned jsonb;
