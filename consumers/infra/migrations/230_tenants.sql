-- Tenants as a scope: the same user id in two tenants is two recipients, with their own
-- preferences, devices and inbox. '' is the default tenant: a deployment without tenants keeps
-- every row in it, and events without a tenant land there, so nothing changes for it.
--
-- Existing rows join their recipient's tenant (herald_recipients.tenant, migration 070), or ''
-- when the user has no recipient row.

-- Recipients: keyed by (tenant, user_id).
ALTER TABLE herald_recipients DROP CONSTRAINT herald_recipients_pkey;
ALTER TABLE herald_recipients ADD PRIMARY KEY (tenant, user_id);
CREATE INDEX herald_recipients_user ON herald_recipients (user_id);  -- erasure's "other tenants?" check

-- Preferences: keyed by (tenant, user_id, category, channel).
ALTER TABLE herald_preferences ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_preferences p SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = p.user_id AND r.tenant <> '';
ALTER TABLE herald_preferences DROP CONSTRAINT herald_preferences_pkey;
ALTER TABLE herald_preferences ADD PRIMARY KEY (tenant, user_id, category, channel);

-- Device tokens: a token still belongs to one (tenant, user) at a time (a device that changed
-- hands moves, across tenants too); push looks tokens up by (tenant, user_id).
ALTER TABLE herald_device_tokens ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_device_tokens d SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = d.user_id AND r.tenant <> '';
DROP INDEX herald_device_tokens_user;
CREATE INDEX herald_device_tokens_user ON herald_device_tokens (tenant, user_id);

-- Inbox rows: every read is by (tenant, user_id); the keyset indexes lead with both.
ALTER TABLE herald_inbox ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_inbox i SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = i.user_id AND r.tenant <> '';
DROP INDEX herald_inbox_unread;
DROP INDEX herald_inbox_read;
CREATE INDEX herald_inbox_unread ON herald_inbox (tenant, user_id, created_at DESC, id DESC) WHERE read_at IS NULL;
CREATE INDEX herald_inbox_read ON herald_inbox (tenant, user_id, created_at DESC, id DESC) WHERE read_at IS NOT NULL;

-- Archived inbox rows keep their tenant (the janitor and the archive action move it along).
ALTER TABLE herald_inbox_archive ADD COLUMN tenant text NOT NULL DEFAULT '';
UPDATE herald_inbox_archive a SET tenant = r.tenant FROM herald_recipients r
    WHERE r.user_id = a.user_id AND r.tenant <> '';

-- A new inbox row is announced with its tenant: a stream is opened by a (tenant, user).
CREATE OR REPLACE FUNCTION herald_inbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_inbox',
                      json_build_object('id', NEW.id, 'user_id', NEW.user_id, 'tenant', NEW.tenant)::text);
    RETURN NULL;
END;
$$;

-- A profile write names (tenant, user_id): classifiers cache profiles by both. Both tables of the
-- trigger (herald_recipients, herald_preferences) now have the two columns.
CREATE OR REPLACE FUNCTION herald_profile_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_profiles', json_build_object(
        'tenant', COALESCE(NEW.tenant, OLD.tenant), 'user_id', COALESCE(NEW.user_id, OLD.user_id))::text);
    RETURN NULL;
END;
$$;
