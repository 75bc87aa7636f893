-- Receipts from POST /v1/receipts that came before anything says whose their notification is (no
-- sent message, workflow or critical check yet). Any end-user token may post any id, and ids are
-- computable, so they are kept apart from herald_receipts, one per (notification, status, user,
-- tenant): another user's early receipt can no longer take the owner's place under (notification,
-- status). The tenant is null when the receipt does not say it (Receipt v1), which is not the
-- default tenant's '' (\x1e is in no tenant name).
-- When the sent outcome comes the fallback moves the owner's into herald_receipts and deletes the
-- rest; the inbox janitor deletes what is older than an hour (ids nothing ever sends).
CREATE TABLE herald_early_receipts (
    notification_id text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('delivered', 'opened', 'read')),
    user_id         text        NOT NULL,
    tenant          text,
    channel         text,
    at              timestamptz NOT NULL,
    source          text        NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX herald_early_receipts_key
    ON herald_early_receipts (notification_id, status, user_id, coalesce(tenant, E'\x1e'));
CREATE INDEX herald_early_receipts_received ON herald_early_receipts (received_at);
