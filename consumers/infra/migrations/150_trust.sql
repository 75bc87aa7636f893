-- Escalations a recipient opted out of are recorded like the others (escalate once, say why).
ALTER TABLE herald_escalations DROP CONSTRAINT herald_escalations_result_check;
ALTER TABLE herald_escalations ADD CONSTRAINT herald_escalations_result_check
    CHECK (result IN ('email', 'no_address', 'opted_out'));

-- Sent messages by notification, so a receipt (delivered/opened/read) can be recorded as an
-- outcome of the message it is about. One row per idempotency key.
CREATE TABLE herald_sent (
    idempotency_key text        PRIMARY KEY,
    notification_id text        NOT NULL,
    channel         text        NOT NULL,
    message         bytea       NOT NULL,
    sent_at         timestamptz NOT NULL
);
CREATE INDEX herald_sent_notification ON herald_sent (notification_id);
CREATE INDEX herald_sent_at ON herald_sent (sent_at);

-- The inbox janitor moves old read rows and expired rows here instead of deleting them. One
-- partition per calendar month (UTC) of archiving, created by the janitor as needed and dropped
-- whole once older than the archive's own retention (HERALD_IN_APP__ARCHIVE_RETENTION_DAYS).
CREATE TABLE herald_inbox_archive (
    id               uuid        NOT NULL,
    user_id          text        NOT NULL,
    notification_id  text        NOT NULL,
    type             text        NOT NULL,
    category         text        NOT NULL,
    title            text        NOT NULL,
    body             text,
    data             jsonb       NOT NULL DEFAULT '{}',
    idempotency_key  text        NOT NULL,
    read_at          timestamptz,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz,
    archived_at      timestamptz NOT NULL,
    PRIMARY KEY (id, archived_at)
) PARTITION BY RANGE (archived_at);
CREATE INDEX herald_inbox_archive_user ON herald_inbox_archive (user_id, created_at DESC);
