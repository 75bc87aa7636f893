-- A workflow run keeps a copy of its route as it started (consumers/workflow/pinned.py): its steps,
-- and the tier, category, template and lane it sends with. A reload of the routing file that
-- inserts, removes or changes a step no longer re-points the runs waiting at a step index, and a
-- process whose file lacks the route (not reloaded yet, or renamed) still runs them. Null on rows
-- from before this migration: they run as before, by the route's match and the step index.
-- A nullable column without a default: a catalogue change only (no table rewrite). One table per
-- migration (271 has the other): a transaction holding this table's lock while it waits for
-- another's would stop every workflow step for that wait.
ALTER TABLE herald_workflows ADD COLUMN pinned jsonb;
