-- The admin API (consumers/api/admin): service API keys, and what recipients carry beyond the
-- classifier's columns.

-- Only an HMAC-SHA256 of each key's secret is kept (with a pepper from settings, not in the
-- database); the key id is public and is how a presented key finds its row.
CREATE TABLE herald_api_keys (
    key_id        text PRIMARY KEY,
    name          text NOT NULL,
    secret_hash   bytea NOT NULL,
    scopes        text[] NOT NULL,
    tenant        text,                     -- NULL: any tenant; else the only tenant the key sees
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz               -- written in batches by the API, not per request
);

-- Custom properties (template variables) and the tenant that owns the recipient ('' = none).
ALTER TABLE herald_recipients ADD COLUMN properties jsonb NOT NULL DEFAULT '{}';
ALTER TABLE herald_recipients ADD COLUMN tenant text NOT NULL DEFAULT '';

-- A write to a recipient or its preferences tells every classifier to drop its cached profile
-- (channel herald_profiles, payload: the user id), so a change is seen within one round trip
-- instead of a cache TTL. Sent at commit; a rolled-back write notifies nobody.
CREATE FUNCTION herald_profile_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_profiles', COALESCE(NEW.user_id, OLD.user_id));
    RETURN NULL;
END;
$$;
CREATE TRIGGER herald_recipients_notify AFTER INSERT OR UPDATE OR DELETE ON herald_recipients
    FOR EACH ROW EXECUTE FUNCTION herald_profile_notify();
CREATE TRIGGER herald_preferences_notify AFTER INSERT OR UPDATE OR DELETE ON herald_preferences
    FOR EACH ROW EXECUTE FUNCTION herald_profile_notify();
