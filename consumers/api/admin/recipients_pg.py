"""Recipients in PostgreSQL: upsert, merge, read and erase, scoped by tenant.

A recipient is a (tenant, user id) (``''`` = the default tenant): the same id in two tenants is
two recipients, with their own preferences, devices, inbox, digests and workflow state, and a
caller in one tenant never sees, changes or erases the other's. Every write fires the ``herald_profiles`` NOTIFY (migration 070), which is how
classifiers learn to drop their cached profile.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from consumers.api.admin.recipient_models import (
    PreferenceIn,
    QuietHoursIn,
    RecipientIn,
    RecipientOut,
    RecipientPatch,
)
from consumers.api.stream import CHANNEL, erasure_notice

__all__ = ["ERASED_KINDS", "RecipientStore"]


_UPSERT = """
INSERT INTO herald_recipients AS r (user_id, tenant, email, phone, locale, timezone, quiet_start, quiet_end,
                                    properties)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT (tenant, user_id) DO UPDATE SET email = $3, phone = $4, locale = $5, timezone = $6,
    quiet_start = $7, quiet_end = $8, properties = $9::jsonb, updated_at = now()
"""

_SELECT = """
SELECT r.user_id, r.tenant, r.email, r.phone, r.locale, r.timezone, r.quiet_start, r.quiet_end,
       r.properties::text AS properties, r.created_at, r.updated_at,
       (SELECT json_agg(json_build_array(p.category, p.channel, p.enabled) ORDER BY p.category, p.channel)
          FROM herald_preferences p WHERE p.tenant = r.tenant AND p.user_id = r.user_id)::text AS prefs
FROM herald_recipients r WHERE r.user_id = $1 AND r.tenant = $2
"""

# Erasure, in order: what points at the user's notifications first, then the rows themselves.
# The recipient, its preferences, devices and inbox rows are the tenant's, and so is the
# delivery state keyed by tenant since migration 240: digests and their items, workflow state,
# workflow digests and throttle counters go by (tenant, user_id), whatever other tenants hold, and
# so do critical checks since migration 262 (one whose tenant is unknown, NULL, by the user rule
# below). Receipts and pending timers that name only the user (a scheduled send's, a
# deferral's or a retry's record key, a preset step's user id) are still keyed by user id alone:
# they go too unless the same id is in use in another tenant ("shared"), whose state they may be;
# a timer of one of this tenant's notifications or digests goes in any case. A timer that says its
# tenant in its data (scheduled sends, deferrals and retries armed since it was added) goes by
# (tenant, user) whatever "shared" says: kept, it would fire later and deliver to the erased user.
# Parameters by scope: tenant ($1 user, $2 tenant), user ($1 user, $2 shared), both ($3 shared).
_USER_NOTIFICATIONS = """
    SELECT notification_id FROM herald_inbox WHERE user_id = $1 AND tenant = $2
    UNION SELECT notification_id FROM herald_digest_items WHERE user_id = $1 AND tenant = $2
    UNION SELECT notification_id FROM herald_workflows WHERE user_id = $1 AND tenant = $2
    UNION SELECT notification_id FROM herald_critical_watch WHERE user_id = $1
        AND (tenant = $2 OR (tenant IS NULL AND NOT $3::bool))
    UNION SELECT notification_id FROM herald_receipts WHERE user_id = $1 AND NOT $3::bool
"""
# The digests' send timers name their digest row: kind digest_send (the medium digest,
# consumers/fallback) or workflow_digest (a route's digest step, consumers/workflow).
_USER_DIGESTS = """
    (kind = 'digest_send' AND (data->>'digest_id')::bigint IN
        (SELECT id FROM herald_digests WHERE user_id = $1 AND tenant = $2))
    OR (kind = 'workflow_digest' AND (data->>'digest_id')::bigint IN
        (SELECT id FROM herald_workflow_digests WHERE user_id = $1 AND tenant = $2))
"""
# Is the id in use in another tenant? Then what is kept by user id only (receipts, timers armed
# before they said their tenant) may be that tenant's and is left to its
# retention. A recipient row is not the only sign: a user known only from events has devices,
# inbox rows, preferences, subscriptions, digests or workflow state there. Each check probes an
# index starting with user_id (migration 261); the OR stops at the first true one, so the small
# tables go first and the inbox and its archive (one index per monthly partition) last. Digest
# items are checked while pending: a digested one's digest is in herald_digests with its user.
_SHARED_CHECKS = (
    ("herald_recipients", ""),
    ("herald_preferences", ""),
    ("herald_device_tokens", ""),
    ("herald_workflows", ""),
    ("herald_digests", ""),
    ("herald_workflow_digests", ""),
    ("herald_workflow_throttle", ""),
    ("herald_digest_items", " AND digest_id IS NULL"),
    ("herald_topic_subscribers", ""),
    ("herald_inbox", " AND read_at IS NULL"),  # the two partial indexes cover every row
    ("herald_inbox", " AND read_at IS NOT NULL"),
    ("herald_inbox_archive", ""),
)
_SHARED = "SELECT " + " OR ".join(
    f"EXISTS (SELECT 1 FROM {t} WHERE user_id = $1 AND tenant <> $2{extra})" for t, extra in _SHARED_CHECKS
)
_LOCKED_DELETE = (
    "WITH locked AS MATERIALIZED (SELECT notification_id FROM {table} WHERE user_id = $1 AND {scope} "
    "ORDER BY notification_id FOR UPDATE) "
    "DELETE FROM {table} WHERE notification_id IN (SELECT notification_id FROM locked)"
)
_ERASE: tuple[tuple[str, str, str], ...] = (
    (
        "pending_steps",
        "both",
        "DELETE FROM herald_timers WHERE state IN ('pending', 'failed') AND ("
        "((msg_key = convert_to($1, 'UTF8') OR data->>'user_id' = $1) "
        "AND CASE WHEN data ? 'tenant' THEN data->>'tenant' = $2 ELSE NOT $3::bool END) "
        "OR data->>'notification_id' IN (" + _USER_NOTIFICATIONS + ") OR " + _USER_DIGESTS + ")",
    ),
    # Workflow state holds the event (and, for presets, the message sent: address, payload).
    (
        "workflow_runs",
        "tenant",
        "DELETE FROM herald_workflow_runs WHERE notification_id IN "
        "(SELECT notification_id FROM herald_workflows WHERE user_id = $1 AND tenant = $2)",
    ),
    # Rows locked in notification_id order first, the fallback's order (consumers/fallback/
    # locking.py: state rows, then watches), or a delete taking them in index order deadlocks
    # with a fallback batch holding one of them.
    # The user's items in any digest (a digest from before migration 240 may be another tenant's
    # user's with this one's items in it), by the workflow rows they joined from. The workflow
    # rows, then the digests, locked in the order join_digest and herald.cancel take them: a
    # digest being sent holds its row while it deletes its items.
    (
        "workflow_digest_items",
        "tenant",
        "WITH locked AS MATERIALIZED (SELECT notification_id FROM herald_workflows WHERE user_id = $1 "
        "AND tenant = $2 ORDER BY notification_id FOR UPDATE), digests AS MATERIALIZED (SELECT id "
        "FROM herald_workflow_digests WHERE (user_id = $1 AND tenant = $2) OR id IN (SELECT digest_id "
        "FROM herald_workflow_digest_items WHERE notification_id IN (SELECT notification_id FROM locked)) "
        "ORDER BY id FOR UPDATE) DELETE FROM herald_workflow_digest_items WHERE notification_id IN "
        "(SELECT notification_id FROM locked) AND digest_id IN (SELECT id FROM digests)",
    ),
    ("workflows", "tenant", _LOCKED_DELETE.format(table="herald_workflows", scope="tenant = $2")),
    # A workflow digest's other items hold their events; they go with it (ON DELETE CASCADE).
    (
        "workflow_digests",
        "tenant",
        "DELETE FROM herald_workflow_digests WHERE user_id = $1 AND tenant = $2",
    ),
    ("throttle", "tenant", "DELETE FROM herald_workflow_throttle WHERE user_id = $1 AND tenant = $2"),
    ("digest_items", "tenant", "DELETE FROM herald_digest_items WHERE user_id = $1 AND tenant = $2"),
    ("digests", "tenant", "DELETE FROM herald_digests WHERE user_id = $1 AND tenant = $2"),
    ("receipts", "user", "DELETE FROM herald_receipts WHERE user_id = $1 AND NOT $2::bool"),
    ("early_receipts", "user", "DELETE FROM herald_early_receipts WHERE user_id = $1 AND NOT $2::bool"),
    # A check whose tenant is unknown (NULL: written before migration 262) goes by the user rule.
    (
        "critical_watch",
        "both",
        _LOCKED_DELETE.format(
            table="herald_critical_watch", scope="(tenant = $2 OR (tenant IS NULL AND NOT $3::bool))"
        ),
    ),
    ("inbox", "tenant", "DELETE FROM herald_inbox WHERE user_id = $1 AND tenant = $2"),
    ("inbox_archive", "tenant", "DELETE FROM herald_inbox_archive WHERE user_id = $1 AND tenant = $2"),
    ("devices", "tenant", "DELETE FROM herald_device_tokens WHERE user_id = $1 AND tenant = $2"),
    # Kept, a subscription made the next broadcast fan a copy out to the erased id, and the
    # classifier's profile for an unknown user delivered it: inbox rows and workflow state again.
    (
        "topic_subscriptions",
        "tenant",
        "DELETE FROM herald_topic_subscribers WHERE user_id = $1 AND tenant = $2",
    ),
    ("preferences", "tenant", "DELETE FROM herald_preferences WHERE user_id = $1 AND tenant = $2"),
    ("recipient", "tenant", "DELETE FROM herald_recipients WHERE user_id = $1 AND tenant = $2"),
)
ERASED_KINDS = tuple(kind for kind, _, _ in _ERASE)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


def _out(row: Any) -> RecipientOut:
    quiet = None
    if row["quiet_start"] is not None and row["quiet_end"] is not None:
        quiet = QuietHoursIn(start=row["quiet_start"], end=row["quiet_end"])
    prefs = json.loads(row["prefs"]) if row["prefs"] else []
    return RecipientOut(
        id=row["user_id"],
        tenant=row["tenant"],
        email=row["email"],
        phone=row["phone"],
        locale=row["locale"],
        timezone=row["timezone"],
        quiet_hours=quiet,
        preferences=[PreferenceIn(category=c, channel=ch, enabled=e) for c, ch, e in prefs],
        properties=json.loads(row["properties"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _upsert_prefs(
    conn: asyncpg.Connection, tenant: str, user_id: str, prefs: list[PreferenceIn]
) -> None:
    if not prefs:
        return
    await conn.execute(
        "INSERT INTO herald_preferences (tenant, user_id, category, channel, enabled) "
        "SELECT $5, $1, c, ch, e FROM unnest($2::text[], $3::text[], $4::bool[]) AS u(c, ch, e) "
        "ON CONFLICT (tenant, user_id, category, channel) "
        "DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()",
        user_id,
        [p.category for p in prefs],
        [p.channel.value for p in prefs],
        [p.enabled for p in prefs],
        tenant,
    )


class RecipientStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, tenant: str, user_id: str) -> RecipientOut | None:
        row = await self.pool.fetchrow(_SELECT, user_id, tenant)
        return _out(row) if row else None

    async def put(self, tenant: str, user_id: str, r: RecipientIn) -> tuple[RecipientOut, bool]:
        """Create or replace; (recipient, created)."""
        async with self.pool.acquire() as conn, conn.transaction():
            existed = await conn.fetchval(
                "SELECT true FROM herald_recipients WHERE tenant = $1 AND user_id = $2", tenant, user_id
            )
            await self.write(conn, tenant, user_id, r)
            row = await conn.fetchrow(_SELECT, user_id, tenant)
        return _out(row), not existed

    @staticmethod
    async def write(conn: asyncpg.Connection, tenant: str, user_id: str, r: RecipientIn) -> None:
        """The replace of one recipient inside the caller's transaction (PUT and the batch share it)."""
        quiet = r.quiet_hours
        await conn.execute(
            _UPSERT,
            user_id,
            tenant,
            r.email,
            r.phone,
            r.locale,
            r.timezone,
            quiet.start if quiet else None,
            quiet.end if quiet else None,
            json.dumps(r.properties),
        )
        await conn.execute(
            "DELETE FROM herald_preferences WHERE tenant = $1 AND user_id = $2", tenant, user_id
        )
        await _upsert_prefs(conn, tenant, user_id, r.preferences)

    async def patch(self, tenant: str, user_id: str, p: RecipientPatch) -> RecipientOut | None:
        """Merge ``p`` into the recipient; None when there is none in this tenant."""
        fields = p.model_fields_set
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SELECT + " FOR UPDATE OF r", user_id, tenant)
            if row is None:
                return None
            current = _out(row)
            props = dict(current.properties)
            for k, v in (p.properties or {}).items():  # RFC 7396 at the top level: null removes
                if v is None:
                    props.pop(k, None)
                else:
                    props[k] = v
            merged = RecipientIn(
                email=p.email if "email" in fields else current.email,
                phone=p.phone if "phone" in fields else current.phone,
                locale=p.locale or current.locale,
                timezone=p.timezone or current.timezone,
                quiet_hours=p.quiet_hours if "quiet_hours" in fields else current.quiet_hours,
                preferences=current.preferences,
                properties=props,
            )
            await self.write(conn, tenant, user_id, merged)
            await _upsert_prefs(conn, tenant, user_id, p.preferences or [])
            row = await conn.fetchrow(_SELECT, user_id, tenant)
        return _out(row)

    async def erase(self, tenant: str, user_id: str) -> dict[str, int]:
        """Delete everything Herald keeps about the user in ``tenant``, in one transaction; rows
        removed per kind. A user without a recipient row (known only from events) is erased all
        the same; the same id in another tenant is another recipient and keeps its rows (see
        ``_SHARED`` for what is kept by user id only). The user's open inbox streams in ``tenant``
        end when it commits."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM herald_recipients WHERE tenant = $1 AND user_id = $2 FOR UPDATE",
                tenant,
                user_id,
            )
            shared = bool(await conn.fetchval(_SHARED, user_id, tenant))
            args: dict[str, tuple[object, ...]] = {
                "tenant": (user_id, tenant),
                "user": (user_id, shared),
                "both": (user_id, tenant, shared),
            }
            removed = {kind: _count(await conn.execute(sql, *args[scope])) for kind, scope, sql in _ERASE}
            # Delivered at commit to every API process: the user's open inbox streams end now, not
            # when their tokens expire (consumers/api/stream.py).
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, erasure_notice(tenant, user_id))
            return removed
