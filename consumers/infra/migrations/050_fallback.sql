-- The fallback consumer's state: receipts seen, push escalations, digests, critical watch.
-- Exactly-once effects come from primary keys and unique constraints, never from timing.

-- Client-side receipts (herald.receipts): one row per (notification, status).
CREATE TABLE herald_receipts (
    notification_id text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('delivered', 'opened', 'read')),
    user_id         text        NOT NULL,
    channel         text,
    at              timestamptz NOT NULL,
    source          text        NOT NULL DEFAULT 'app',
    PRIMARY KEY (notification_id, status)
);

-- Escalation timers armed per notification, so a receipt can find and cancel them.
CREATE TABLE herald_escalation_watch (
    timer_key       text        PRIMARY KEY,
    notification_id text        NOT NULL,
    push_key        text        NOT NULL,
    armed_at        timestamptz NOT NULL
);
CREATE INDEX herald_escalation_watch_notification ON herald_escalation_watch (notification_id);

-- One row per escalated push: the primary key is the email's idempotency key, so a timeout
-- and a permanent failure of the same push (or a re-fired timer) escalate once.
CREATE TABLE herald_escalations (
    escalation_key  text        PRIMARY KEY,
    notification_id text        NOT NULL,
    push_key        text        NOT NULL,
    reason          text        NOT NULL,
    result          text        NOT NULL CHECK (result IN ('email', 'no_address')),
    created_at      timestamptz NOT NULL
);

-- The medium-tier digest: at most one digest per (user, window); an inbox row joins once.
CREATE TABLE herald_digests (
    id              bigserial   PRIMARY KEY,
    user_id         text        NOT NULL,
    window_start    timestamptz NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'no_address')),
    send_at         timestamptz NOT NULL,
    idempotency_key text        NOT NULL UNIQUE,
    item_count      integer,
    sent_at         timestamptz,
    UNIQUE (user_id, window_start)
);

CREATE TABLE herald_digest_items (
    inbox_id        uuid        PRIMARY KEY,      -- one inbox row joins one digest, ever
    user_id         text        NOT NULL,
    notification_id text        NOT NULL,
    idempotency_key text        NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    joined_at       timestamptz NOT NULL,
    digest_id       bigint      REFERENCES herald_digests (id)
);
CREATE INDEX herald_digest_items_pending ON herald_digest_items (user_id) WHERE digest_id IS NULL;

-- Critical notifications: did any channel send within the deadline?
CREATE TABLE herald_critical_watch (
    notification_id text        PRIMARY KEY,
    user_id         text        NOT NULL,
    event_type      text        NOT NULL,
    deadline        timestamptz NOT NULL,
    first_sent_at   timestamptz,
    first_channel   text,
    verdict         text        CHECK (verdict IN ('delivered', 'undelivered')),
    checked_at      timestamptz
);
