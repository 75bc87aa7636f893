-- Who gets notified, how, and what they opted out of. Shared by the classifier (lookups),
-- the push adapter (device tokens), the webhook adapter (endpoints) and the in-app inbox.

CREATE TABLE herald_recipients (
    user_id      text PRIMARY KEY,
    email        text,
    phone        text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),  -- E.164
    timezone     text NOT NULL DEFAULT 'UTC',     -- IANA zone name, never a UTC offset
    locale       text NOT NULL DEFAULT 'en',      -- BCP 47
    quiet_start  time,                            -- local wall-clock quiet window; NULL: none
    quiet_end    time,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE herald_device_tokens (
    token        text PRIMARY KEY,
    user_id      text NOT NULL,
    platform     text NOT NULL DEFAULT 'android' CHECK (platform IN ('android', 'ios', 'web')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_device_tokens_user ON herald_device_tokens (user_id);

-- Absent row: the channel's default (enabled). Critical ignores opt-outs.
CREATE TABLE herald_preferences (
    user_id      text NOT NULL,
    category     text NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'in_app', 'webhook')),
    enabled      boolean NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, category, channel)
);

-- Subscribers of system events. owner_id is the id system events are keyed by (DomainEvent.user_id).
CREATE TABLE herald_webhook_endpoints (
    endpoint_id          text PRIMARY KEY,
    owner_id             text NOT NULL,
    url                  text NOT NULL,
    secrets              text[] NOT NULL,             -- active signing secrets, newest first (rotation)
    event_types          text[] NOT NULL DEFAULT '{*}',  -- glob patterns
    description          text,
    disabled_at          timestamptz,
    disabled_reason      text,
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    total_failures       bigint NOT NULL DEFAULT 0,
    total_successes      bigint NOT NULL DEFAULT 0,
    last_success_at      timestamptz,
    last_failure_at      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX herald_webhook_endpoints_owner ON herald_webhook_endpoints (owner_id);

-- The in-app inbox: one row per in-app notification, with its idempotency key, category and expiry.
CREATE TABLE herald_inbox (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          text NOT NULL,
    notification_id  text NOT NULL,
    type             text NOT NULL,
    category         text NOT NULL,
    title            text NOT NULL,
    body             text,
    data             jsonb NOT NULL DEFAULT '{}',
    idempotency_key  text NOT NULL UNIQUE,         -- a redelivered message never makes a second row
    read_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz
);
CREATE INDEX herald_inbox_unread ON herald_inbox (user_id, created_at DESC, id DESC) WHERE read_at IS NULL;
CREATE INDEX herald_inbox_notification ON herald_inbox (notification_id);
