-- The apps' API (consumers/api).
-- 1. Every new inbox row is announced on channel herald_inbox, so an API process can push it to
--    the user's open event streams. Only ids travel (NOTIFY payloads are capped at 8000 bytes);
--    the stream reads the row back, scoped by user. NOTIFY is sent at commit, never for a
--    rolled-back insert.
CREATE FUNCTION herald_inbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_inbox', json_build_object('id', NEW.id, 'user_id', NEW.user_id)::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER herald_inbox_notify AFTER INSERT ON herald_inbox
    FOR EACH ROW EXECUTE FUNCTION herald_inbox_notify();

-- 2. GET /v1/inbox lists unread rows first (herald_inbox_unread), then read ones: this is the
--    read half's keyset index, so a user's read history pages without sorting it.
CREATE INDEX herald_inbox_read ON herald_inbox (user_id, created_at DESC, id DESC) WHERE read_at IS NOT NULL;
