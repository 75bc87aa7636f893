-- The activity store (`herald run ledger`): one row per outcome, receipt and dead letter, what the
-- console, `herald why` and `herald dlq` read.
--
-- Partitioned by day of `anchor_at`: the event's time for outcomes (the same for every outcome of
-- one idempotency key, so a replay lands in the same partition and the unique index below makes it
-- a no-op), the receipt's time for receipts, the dead-letter record's timestamp for dead letters.
-- Retention drops whole partitions (`herald_activity_pYYYYMMDD`); the ledger creates them on demand.
CREATE TABLE herald_activity (
    anchor_at           timestamptz NOT NULL,
    dedupe_key          text        NOT NULL,   -- idempotency key (outcomes), receipt:/dlq: keys otherwise
    status              text        NOT NULL,
    attempt             integer     NOT NULL,
    kind                text        NOT NULL,   -- outcome | receipt | dead_letter
    recorded_at         timestamptz NOT NULL,
    event_id            text,
    notification_id     text,
    user_id             text,
    tenant              text,
    event_type          text,
    tier                text,
    channel             text,
    lane                text,
    recipient           text,
    provider            text,
    provider_message_id text,
    reason              text,
    detail              text,
    error_code          text,
    not_before          timestamptz,
    escalated_from      text,
    topic               text,                   -- dead letters: the .dlq topic, partition, offset
    kafka_partition     integer,
    kafka_offset        bigint,
    source_topic        text,                   -- dead letters: where the record came from
    consumer_group      text,                   -- dead letters: the group that refused it
    ingested_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dedupe_key, status, attempt, anchor_at)
) PARTITION BY RANGE (anchor_at);

CREATE INDEX herald_activity_notification ON herald_activity (notification_id, recorded_at);
CREATE INDEX herald_activity_event ON herald_activity (event_id);
CREATE INDEX herald_activity_user ON herald_activity (user_id, recorded_at);
CREATE INDEX herald_activity_recipient ON herald_activity (recipient) WHERE recipient IS NOT NULL;
CREATE INDEX herald_activity_recorded ON herald_activity (recorded_at);
CREATE INDEX herald_activity_dead ON herald_activity (topic, reason) WHERE kind = 'dead_letter';

-- Who replayed which dead letters, when (`herald dlq replay` and the console).
CREATE TABLE herald_dlq_audit (
    id           bigserial   PRIMARY KEY,
    actor        text        NOT NULL,
    action       text        NOT NULL,          -- replay
    dlq_topic    text        NOT NULL,
    target_topic text        NOT NULL,
    selector     text        NOT NULL,          -- "offset 3:17" or "reason=poison"
    records      integer     NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_dlq_audit_at ON herald_dlq_audit (at DESC);

-- Operators' console sessions and one-time login links: only SHA-256 digests of the tokens are
-- stored (the tokens are 256 random bits, so a fast hash is enough).
CREATE TABLE herald_console_sessions (
    token_hash  bytea       PRIMARY KEY,
    operator    text        NOT NULL,            -- "key:<key id> (<name>)" or "link:<label>"
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX herald_console_sessions_expiry ON herald_console_sessions (expires_at);

CREATE TABLE herald_console_logins (
    token_hash  bytea       PRIMARY KEY,
    label       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
