-- Durable timers: deferred sends, retries, escalations, digests. A row is released once
-- (FOR UPDATE SKIP LOCKED) and is idempotent by key: arming the same timer twice is one row.
CREATE TABLE herald_timers (
    id          bigserial PRIMARY KEY,
    key         text        NOT NULL UNIQUE,
    kind        text        NOT NULL,             -- publish | escalate_push | digest | critical_check | ...
    due_at      timestamptz NOT NULL,
    topic       text,                             -- kind=publish: where the payload goes
    msg_key     bytea,
    payload     bytea,
    data        jsonb       NOT NULL DEFAULT '{}',
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    fired_at    timestamptz
);
CREATE INDEX herald_timers_due ON herald_timers (due_at) WHERE state = 'pending';
