-- A workflow run keeps the steps it started with (consumers/workflow/pinned.py): a reload of the
-- routing file that inserts, removes or changes a step no longer re-points the runs waiting at a
-- step index. A route's digest keeps the digest step its first item joined with. Null on rows
-- from before this migration: they run as before, by the route's match and the step index.
-- Nullable columns without a default: a catalogue change only (no table rewrite), which holds
-- each table for a moment, not for its size.
ALTER TABLE herald_workflows ADD COLUMN steps jsonb;
ALTER TABLE herald_workflow_digests ADD COLUMN step jsonb;
