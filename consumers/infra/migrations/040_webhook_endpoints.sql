-- Webhook endpoints: secret rotation grace and messages kept for replay.
-- On rotation the new secret is prepended to `secrets`; the previous one stays active (signed
-- alongside) until previous_secret_expires_at, so receivers can switch over without losing messages.
ALTER TABLE herald_webhook_endpoints ADD COLUMN previous_secret_expires_at timestamptz;

-- Every webhook message that failed for an endpoint and has not been delivered since: removed on
-- success, kept when the endpoint is disabled (by 410, by hand, or after failing continuously),
-- re-published by `herald endpoints replay <id> --since ...`.
CREATE TABLE herald_webhook_pending (
    endpoint_id      text        NOT NULL REFERENCES herald_webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    idempotency_key  text        NOT NULL,
    event_type       text        NOT NULL,
    message          bytea       NOT NULL,            -- the Avro ChannelMessage as consumed
    reason           text,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    replayed_at      timestamptz,
    PRIMARY KEY (endpoint_id, idempotency_key)
);
CREATE INDEX herald_webhook_pending_since ON herald_webhook_pending (endpoint_id, first_failed_at);
