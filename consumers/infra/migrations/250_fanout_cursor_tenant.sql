-- Tenants choose their event ids, so two tenants may broadcast under the same one: a fan-out
-- cursor is one per (tenant, event id), or the second tenant's broadcast found the first's
-- finished cursor and sent nothing.
ALTER TABLE herald_fanout_cursors DROP CONSTRAINT herald_fanout_cursors_pkey;
ALTER TABLE herald_fanout_cursors ADD PRIMARY KEY (tenant, event_id);
