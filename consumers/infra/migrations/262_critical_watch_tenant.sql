-- The critical watch joins the tenant scope of migrations 230 and 240. Its rows named the user id
-- only: erasure could not tell whose a row was (acme's DELETE of bob kept every row of any bob
-- while the id was in use in another tenant, and removed globex's bob's with acme's otherwise),
-- and a receipt for a critical notification was compared with its user, not its tenant. New rows
-- carry the notification's tenant ('' the default one).
--
-- ADD COLUMN with a constant default changes no row (PostgreSQL 11 and later): the table is not
-- rewritten. Existing rows take their notification's inbox row's tenant (a critical notification
-- goes to every channel, in-app included; both lookups use an index on notification_id) or its
-- workflow row's; any other (its inbox row archived: the archive has no such index and is not
-- read whole here) stays in '', as rows of a deployment without tenants do. The index is built while the table's writes wait (one row
-- per critical notification: small) and serves erasure's (tenant, user) lookups, user id first
-- as in migration 261.
ALTER TABLE herald_critical_watch ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_critical_watch w SET tenant = i.tenant FROM herald_inbox i
    WHERE i.notification_id = w.notification_id AND i.tenant <> '';
UPDATE herald_critical_watch w SET tenant = f.tenant FROM herald_workflows f
    WHERE f.notification_id = w.notification_id AND f.tenant <> '' AND w.tenant = '';
CREATE INDEX herald_critical_watch_user ON herald_critical_watch (user_id, tenant);
