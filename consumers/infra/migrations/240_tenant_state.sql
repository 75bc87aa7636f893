-- Delivery state joins the tenant scope of migration 230. The medium digest, the workflow
-- throttle counters, the workflow digests and the workflow state rows were keyed by user id
-- only: the same id in two tenants shared one digest (sent with the default tenant's address,
-- or none, so a non-default tenant's medium digest ended as no_address) and one throttle
-- allowance, a workflow digest could list two tenants' items under one tenant's sender, and
-- erasure could not tell whose state a row was. Each is now keyed by (tenant, user_id, ...).
-- '' is the default tenant, as in 230: a deployment without tenants keeps every row in it.
--
-- Existing rows take their inbox row's tenant (herald_inbox.tenant, or the archived row's); a
-- row with none takes the tenant of its user's recipient when the id is a recipient of exactly
-- one tenant; any other row stays in ''.

-- Medium digest items: an item is its inbox row's, so it takes that row's tenant.
ALTER TABLE herald_digest_items ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_digest_items d SET tenant = i.tenant FROM herald_inbox i
    WHERE i.id = d.inbox_id AND i.tenant <> '';
UPDATE herald_digest_items d SET tenant = a.tenant FROM herald_inbox_archive a
    WHERE a.id = d.inbox_id AND a.tenant <> '' AND d.tenant = '';
DROP INDEX herald_digest_items_pending;
CREATE INDEX herald_digest_items_pending ON herald_digest_items (tenant, user_id) WHERE digest_id IS NULL;

-- Medium digests: at most one per (tenant, user, window); the digest key of the default tenant
-- is unchanged (consumers/fallback/decisions.py digest_key), so keys already sent stay stable.
-- A sent digest takes its items' tenant; a pending one (its items are linked at send time) the
-- tenant of its user's pending items. A user id with pending items in two tenants at the upgrade
-- (the mix this migration ends) keeps one pending digest; the other tenant's items go out with
-- that tenant's next digest of the user.
ALTER TABLE herald_digests ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_digests g SET tenant = d.tenant FROM herald_digest_items d
    WHERE d.digest_id = g.id AND d.tenant <> '';
UPDATE herald_digests g SET tenant = d.tenant FROM herald_digest_items d
    WHERE g.state = 'pending' AND d.digest_id IS NULL AND d.user_id = g.user_id AND d.tenant <> '';
ALTER TABLE herald_digests DROP CONSTRAINT herald_digests_user_id_window_start_key;
ALTER TABLE herald_digests ADD CONSTRAINT herald_digests_tenant_user_window
    UNIQUE (tenant, user_id, window_start);

-- Workflow state rows hold the event (and a preset's sent message): erasure finds them by
-- (tenant, user_id). The event itself is Avro, out of SQL's reach: the notification's inbox row
-- (a preset's in-app item, a workflow's in-app send) tells the tenant, else the recipient.
ALTER TABLE herald_workflows ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_workflows w SET tenant = i.tenant FROM herald_inbox i
    WHERE i.notification_id = w.notification_id AND i.tenant <> '';
UPDATE herald_workflows w SET tenant = a.tenant FROM herald_inbox_archive a
    WHERE a.notification_id = w.notification_id AND a.tenant <> '' AND w.tenant = '';
UPDATE herald_workflows w SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = w.user_id AND r.tenant <> '' AND w.tenant = ''
      AND NOT EXISTS (SELECT 1 FROM herald_recipients o WHERE o.user_id = w.user_id AND o.tenant <> r.tenant);
CREATE INDEX herald_workflows_user ON herald_workflows (tenant, user_id);  -- erasure

-- Workflow digests: one per (tenant, user, route, window); a tenant's items never join another
-- tenant's digest. Existing digests take their items' workflow rows' tenant.
ALTER TABLE herald_workflow_digests ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_workflow_digests g SET tenant = w.tenant
    FROM herald_workflow_digest_items d JOIN herald_workflows w USING (notification_id)
    WHERE d.digest_id = g.id AND w.tenant <> '';
UPDATE herald_workflow_digests g SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = g.user_id AND r.tenant <> '' AND g.tenant = ''
      AND NOT EXISTS (SELECT 1 FROM herald_recipients o WHERE o.user_id = g.user_id AND o.tenant <> r.tenant);
ALTER TABLE herald_workflow_digests DROP CONSTRAINT herald_workflow_digests_user_id_route_window_start_key;
ALTER TABLE herald_workflow_digests ADD CONSTRAINT herald_workflow_digests_tenant_user_route_window
    UNIQUE (tenant, user_id, route, window_start);

-- Workflow throttle: one allowance per (tenant, user, route, window). The counters name no
-- notification: they take the recipient's tenant; a counter left in '' that was another tenant's
-- only means that tenant's user starts the current window afresh, once.
ALTER TABLE herald_workflow_throttle ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_workflow_throttle t SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = t.user_id AND r.tenant <> ''
      AND NOT EXISTS (SELECT 1 FROM herald_recipients o WHERE o.user_id = t.user_id AND o.tenant <> r.tenant);
ALTER TABLE herald_workflow_throttle DROP CONSTRAINT herald_workflow_throttle_pkey;
ALTER TABLE herald_workflow_throttle ADD PRIMARY KEY (tenant, user_id, route, window_start);
