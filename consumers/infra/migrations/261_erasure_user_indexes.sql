-- Erasure asks whether a user id has rows in any other tenant (user_id = $1 AND tenant <> $2,
-- consumers/api/admin/recipients_pg.py). An index that starts with the tenant cannot answer that
-- without reading itself whole (no skip scan before PostgreSQL 18), and herald_inbox was read
-- whole. The secondary indexes of the tables written per delivery (inbox, device tokens,
-- workflows, pending digest items) serve only (tenant, user_id) equality, so they now start with
-- the user: the same lookups, and the erasure's, at no extra write. The tables keyed by a
-- constraint that starts with the tenant hold a row per user and window or setting, not per
-- delivery: they get a user_id index (one more entry per such row). The new indexes are built
-- under new names first (a build holds the table's writes, not its reads), and the old ones are
-- dropped and the new ones renamed at the end: DROP INDEX locks the table for reads too, and the
-- file is one transaction, so dropping first would have held reads for every build after it.
CREATE INDEX herald_inbox_unread_by_user ON herald_inbox (user_id, tenant, created_at DESC, id DESC) WHERE read_at IS NULL;
CREATE INDEX herald_inbox_read_by_user ON herald_inbox (user_id, tenant, created_at DESC, id DESC) WHERE read_at IS NOT NULL;
CREATE INDEX herald_device_tokens_user_by_user ON herald_device_tokens (user_id, tenant);
CREATE INDEX herald_workflows_user_by_user ON herald_workflows (user_id, tenant);
CREATE INDEX herald_digest_items_pending_by_user ON herald_digest_items (user_id, tenant) WHERE digest_id IS NULL;
CREATE INDEX herald_preferences_user ON herald_preferences (user_id);
CREATE INDEX herald_topic_subscribers_user ON herald_topic_subscribers (user_id);
CREATE INDEX herald_digests_user ON herald_digests (user_id);
CREATE INDEX herald_workflow_digests_user ON herald_workflow_digests (user_id);
CREATE INDEX herald_workflow_throttle_user ON herald_workflow_throttle (user_id);
DROP INDEX herald_inbox_unread;
ALTER INDEX herald_inbox_unread_by_user RENAME TO herald_inbox_unread;
DROP INDEX herald_inbox_read;
ALTER INDEX herald_inbox_read_by_user RENAME TO herald_inbox_read;
DROP INDEX herald_device_tokens_user;
ALTER INDEX herald_device_tokens_user_by_user RENAME TO herald_device_tokens_user;
DROP INDEX herald_workflows_user;
ALTER INDEX herald_workflows_user_by_user RENAME TO herald_workflows_user;
DROP INDEX herald_digest_items_pending;
ALTER INDEX herald_digest_items_pending_by_user RENAME TO herald_digest_items_pending;
