-- Workflows (routes with their own steps): one state row per (event, user) = notification, a
-- log of the steps that ran (one row per step: a replay never runs a step twice), throttle
-- counters, per-route digests, and what herald.cancel needs to find by cancel_key.

CREATE TABLE herald_workflows (
    notification_id text        PRIMARY KEY,
    event_id        text        NOT NULL,
    user_id         text        NOT NULL,
    route           text        NOT NULL,          -- the route's match (the steps are read from the table)
    step            int         NOT NULL DEFAULT 0, -- the next step to run (0-based)
    state           text        NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'waiting', 'done', 'cancelled', 'dropped')),
    wait_for        text,                          -- waiting: delivered | read
    cancel_key      text,
    event           bytea       NOT NULL,          -- the DomainEvent (Avro): what later steps send
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX herald_workflows_cancel ON herald_workflows (cancel_key)
    WHERE cancel_key IS NOT NULL AND state IN ('running', 'waiting');

CREATE TABLE herald_workflow_runs (
    notification_id text        NOT NULL,
    step            int         NOT NULL,
    kind            text        NOT NULL,
    result          text        NOT NULL,
    ran_at          timestamptz NOT NULL,
    PRIMARY KEY (notification_id, step)
);

CREATE TABLE herald_workflow_throttle (
    user_id      text        NOT NULL,
    route        text        NOT NULL,
    window_start timestamptz NOT NULL,
    admitted     int         NOT NULL,
    PRIMARY KEY (user_id, route, window_start)
);

CREATE TABLE herald_workflow_digests (
    id           bigserial   PRIMARY KEY,
    user_id      text        NOT NULL,
    route        text        NOT NULL,
    window_start timestamptz NOT NULL,
    send_at      timestamptz NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent')),
    item_count   int,
    UNIQUE (user_id, route, window_start)
);

CREATE TABLE herald_workflow_digest_items (
    notification_id text        PRIMARY KEY,
    digest_id       bigint      NOT NULL REFERENCES herald_workflow_digests (id) ON DELETE CASCADE,
    cancel_key      text,
    event           bytea       NOT NULL,
    joined_at       timestamptz NOT NULL
);
CREATE INDEX herald_workflow_digest_items_digest ON herald_workflow_digest_items (digest_id);
CREATE INDEX herald_workflow_digest_items_cancel ON herald_workflow_digest_items (cancel_key)
    WHERE cancel_key IS NOT NULL;

-- Notifications sent at once that carry a cancel_key: a cancel finds them here to stop their
-- retries and to flag them for the channel consumers (Redis) while they wait in a lane.
CREATE TABLE herald_cancel_index (
    cancel_key      text        NOT NULL,
    notification_id text        NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (cancel_key, notification_id)
);

-- Pending timers by cancel_key (scheduled sends, workflow steps, retries, deferred sends).
CREATE INDEX herald_timers_cancel_key ON herald_timers ((data->>'cancel_key'))
    WHERE state = 'pending' AND data ? 'cancel_key';
-- Pending retries of a notification (a cancel stops them).
CREATE INDEX herald_timers_notification ON herald_timers ((data->>'notification_id'))
    WHERE state = 'pending' AND kind = 'publish';
