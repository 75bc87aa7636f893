"""Medium tier: in-app items still unread after a while are emailed as one digest per window.

The medium preset's ``digest`` step runs on the workflow executor
(``consumers.workflow.preset_run``): :func:`join_user_digest` is its body; the digest itself,
one per user and window across routes, is sent by :func:`fire_digest_send`.

Each item passes the consent check of its own category for email when the digest goes out: an
item whose category the user switched off for email is left out (``suppressed``/``opted_out``
on that item), and a digest due inside quiet hours waits for the window's end.

Digests are a tenant's: the item's inbox row names the tenant (``herald_inbox.tenant``), the
digest is one per (tenant, user, window), its address, locale and consent are the user's in that
tenant, and the email carries the tenant (its sender and templates). The same user id in two
tenants is two recipients with two digests.

One digest per (tenant, user, window) and one digest membership per inbox row are unique
constraints (``herald_digests``, ``herald_digest_items``); the digest row is locked while
items join and while it is sent, so two items arriving in the same millisecond, two
pollers or a replay can never make a second digest or lose an item between digests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from consumers.classifier.consent import may_send
from consumers.classifier.quiet_hours import quiet_until
from consumers.fallback.context import Contact, FallbackContext, load_contact, load_contacts
from consumers.fallback.decisions import (
    KIND_DIGEST_SEND,
    DigestItem,
    digest_content,
    digest_key,
    digest_message,
    digest_send_at,
    fallback_outcome,
)
from consumers.infra.keys import derived_key, outcome_id
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.scheduler.store import Timer
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier

__all__ = ["Joining", "fire_digest_item", "fire_digest_send", "join_digests", "join_user_digest"]

log = logging.getLogger(__name__)


async def fire_digest_item(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due (a timer armed before the executor ran the medium preset): join the digest if unread."""
    await join_user_digest(
        ctx,
        conn,
        idempotency_key=str(timer.data["idempotency_key"]),
        notification_id=str(timer.data.get("notification_id", "")),
        event_id=str(timer.data.get("event_id", "")),
        event_type=str(timer.data.get("event_type", "")),
    )
    return []


async def join_user_digest(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    *,
    idempotency_key: str,
    notification_id: str,
    event_id: str,
    event_type: str,
) -> bool:
    """If the in-app item (inbox row) is still unread, it joins the user's pending digest."""
    row = await conn.fetchrow(
        "SELECT id, user_id, tenant, read_at FROM herald_inbox WHERE idempotency_key = $1", idempotency_key
    )
    if row is None or row["read_at"] is not None:
        return False
    await join_digests(
        ctx,
        conn,
        [
            Joining(
                row["id"],
                row["tenant"],
                row["user_id"],
                notification_id,
                idempotency_key,
                event_id,
                event_type,
            )
        ],
    )
    return True


@dataclass(frozen=True, slots=True)
class Joining:
    """An unread in-app item joining its user's digest: its inbox row (id, tenant, user) and what
    the digest lists of its notification."""

    inbox_id: Any
    tenant: str
    user_id: str
    notification_id: str
    idempotency_key: str
    event_id: str
    event_type: str


async def join_digests(
    ctx: FallbackContext,
    conn: asyncpg.Connection,
    items: Sequence[Joining],
    contacts: Mapping[tuple[str, str], Contact] | None = None,
) -> None:
    """The unread items join their users' pending digests, whose send timers are armed: one query for
    the users' contacts (unless given, by (tenant, user)), two statements a user for their digest,
    one for the items and one for the timers."""
    if not items:
        return
    now = ctx.clock.now()
    who = sorted({(i.tenant, i.user_id) for i in items})
    if contacts is None or any(w not in contacts for w in who):
        contacts = await load_contacts(conn, who, ctx.default_locale)
    # In (tenant, user) order: two pollers joining items of the same users lock their digests alike.
    digests = {w: await _pending_digest(ctx, conn, w, contacts[w], now) for w in who}
    await conn.execute(
        "INSERT INTO herald_digest_items (inbox_id, tenant, user_id, notification_id, idempotency_key, "
        "event_id, event_type, joined_at) SELECT *, $8::timestamptz FROM unnest($1::uuid[], $2::text[], "
        "$3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) ON CONFLICT (inbox_id) DO NOTHING",
        [i.inbox_id for i in items],
        [i.tenant for i in items],
        [i.user_id for i in items],
        [i.notification_id for i in items],
        [i.idempotency_key for i in items],
        [i.event_id for i in items],
        [i.event_type for i in items],
        now,
    )
    await ctx.scheduler.arm([_send_timer(d, at) for d, at in sorted(set(digests.values()))], conn)


def _send_timer(digest_id: int, due_at: datetime, attempt: str = "") -> Timer:
    # Keyed by the digest row: a window whose empty digest was dropped gets a fresh row and timer.
    return Timer(
        key=derived_key(f"digest-row:{digest_id}", f"send{attempt}"),
        kind=KIND_DIGEST_SEND,
        due_at=due_at,
        data={"digest_id": digest_id},
    )


async def _pending_digest(
    ctx: FallbackContext, conn: asyncpg.Connection, who: tuple[str, str], contact: Contact, now: datetime
) -> tuple[int, datetime]:
    """The (locked) pending digest of ``who`` (tenant, user) an item joining now belongs to,
    creating it if needed."""
    tenant, user_id = who
    s = ctx.settings
    taken: list[datetime] = []
    while True:
        plan = digest_send_at(
            now, window_s=s.digest_window_s, collect_s=s.digest_collect_s, sent_windows=taken
        )
        quiet = quiet_until(plan.send_at, contact.zone, contact.quiet)
        if quiet is not None:
            plan = digest_send_at(
                now,
                window_s=s.digest_window_s,
                collect_s=s.digest_collect_s,
                sent_windows=taken,
                quiet_until=quiet,
            )
        await conn.execute(
            "INSERT INTO herald_digests (tenant, user_id, window_start, send_at, idempotency_key) "
            "VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant, user_id, window_start) DO NOTHING",
            tenant,
            user_id,
            plan.window_start,
            plan.send_at,
            digest_key(user_id, plan.window_start, tenant),
        )
        # The lock orders this join against a send of the same digest in another transaction.
        row = await conn.fetchrow(
            "SELECT id, state, send_at FROM herald_digests "
            "WHERE tenant = $1 AND user_id = $2 AND window_start = $3 FOR UPDATE",
            tenant,
            user_id,
            plan.window_start,
        )
        assert row is not None
        if row["state"] == "pending":
            return int(row["id"]), row["send_at"]
        taken.append(plan.window_start)  # this window's digest went out: the next window's


async def fire_digest_send(ctx: FallbackContext, timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
    """Due: email every pending unread item of the (tenant, user), once for this window."""
    digest_id = int(timer.data["digest_id"])
    digest = await conn.fetchrow(
        "SELECT id, tenant, user_id, window_start, state FROM herald_digests WHERE id = $1 FOR UPDATE",
        digest_id,
    )
    if digest is None or digest["state"] != "pending":
        return []
    user_id: str = digest["user_id"]
    tenant: str = digest["tenant"]
    now = ctx.clock.now()
    contact = await load_contact(conn, user_id, ctx.default_locale, tenant)
    quiet = quiet_until(now, contact.zone, contact.quiet)
    if quiet is not None:  # quiet hours changed since the digest was planned: wait for them to end
        await conn.execute("UPDATE herald_digests SET send_at = $2 WHERE id = $1", digest_id, quiet)
        await ctx.scheduler.arm([_send_timer(digest_id, quiet, f":{quiet.isoformat()}")], conn)
        return []
    unread, opted_out = await _unread_items(conn, (tenant, user_id), contact)
    skipped = [ctx.outcome_output(_opted_out_outcome(r, contact, user_id, now)) for r in opted_out]
    if not unread:
        # Nothing to say: free the window so a later item can still have this window's digest.
        await conn.execute("DELETE FROM herald_digests WHERE id = $1", digest_id)
        return skipped
    await _close(conn, digest_id, unread, state="sent" if contact.email else "no_address", now=now)
    items = [DigestItem(r["title"], r["body"] or "", r["created_at"]) for r in unread]
    content = digest_content(items, ctx.settings.digest_max_items)
    message = digest_message(
        user_id=user_id,
        email=contact.email or "",
        window_start=digest["window_start"],
        content=content,
        locale=contact.locale,
        timezone=contact.timezone,
        now=now,
        tenant=tenant,
    )
    if contact.email is None:
        log.warning(
            "digest for user %s (tenant %r): no email address (%d items)", user_id, tenant, len(unread)
        )
        return [
            ctx.outcome_output(
                fallback_outcome(
                    message,
                    OutcomeStatus.SUPPRESSED,
                    now=now,
                    reason="no_address",
                    detail=f"digest of {len(unread)} items",
                )
            ),
            *skipped,
        ]
    metrics.DIGESTS.inc()
    metrics.ESCALATIONS.labels(Tier.MEDIUM.value, "digest").inc(len(unread))
    log.info(
        "digest for user %s (tenant %r): %d items (%d listed)",
        user_id,
        tenant,
        len(unread),
        len(content["items"]),
    )
    outputs = [ctx.email_output(message)]
    outputs += [ctx.outcome_output(_item_outcome(r, message, now)) for r in unread]
    return outputs + skipped


async def _unread_items(
    conn: asyncpg.Connection, who: tuple[str, str], contact: Contact
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The (tenant, user)'s items waiting for a digest and still unread, locked for this transaction;
    and those left out because the user switched their category's email, or the digest itself, off."""
    rows = await conn.fetch(
        "SELECT d.inbox_id, d.notification_id, d.idempotency_key, d.event_id, d.event_type, i.title, i.body, "
        "i.created_at, i.read_at, i.category FROM herald_digest_items d LEFT JOIN herald_inbox i "
        "ON i.id = d.inbox_id WHERE d.tenant = $1 AND d.user_id = $2 AND d.digest_id IS NULL "
        "FOR UPDATE OF d",
        *who,
    )
    unread = [r for r in rows if r["title"] is not None and r["read_at"] is None]
    opted_out = [
        r
        for r in unread
        if not may_send(Tier.MEDIUM, r["category"], Channel.EMAIL, contact.preferences, digest=contact.digest)
    ]
    unread = [r for r in unread if r not in opted_out]
    gone = [r["inbox_id"] for r in rows if r["title"] is None or r["read_at"] is not None]
    gone += [r["inbox_id"] for r in opted_out]
    if gone:  # read, archived, or its category switched off for email: left out, for good
        await conn.execute("DELETE FROM herald_digest_items WHERE inbox_id = ANY($1::uuid[])", gone)
    return unread, opted_out


async def _close(
    conn: asyncpg.Connection, digest_id: int, items: list[asyncpg.Record], *, state: str, now: datetime
) -> None:
    """The digest is done (``sent`` or ``no_address``) and these items are in it: no later digest lists them."""
    await conn.execute(
        "UPDATE herald_digests SET state = $2, item_count = $3, sent_at = $4 WHERE id = $1",
        digest_id,
        state,
        len(items),
        now,
    )
    await conn.execute(
        "UPDATE herald_digest_items SET digest_id = $1 WHERE inbox_id = ANY($2::uuid[])",
        digest_id,
        [r["inbox_id"] for r in items],
    )


def _item_outcome(row: asyncpg.Record, digest: ChannelMessage, now: datetime) -> DeliveryOutcome:
    """Per item: its notification went out again in this digest (``herald why`` shows it)."""
    return DeliveryOutcome(
        outcome_id=outcome_id(row["idempotency_key"], "escalated:digest"),
        notification_id=row["notification_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        user_id=digest.user_id,
        tier=Tier.MEDIUM,
        status=OutcomeStatus.ESCALATED,
        occurred_at=row["created_at"],
        recorded_at=now,
        channel=Channel.EMAIL,
        lane=digest.lane,
        reason="digest",
        detail=f"in-app unread; in digest {digest.idempotency_key}",
        idempotency_key=digest.idempotency_key,
    )


def _opted_out_outcome(row: asyncpg.Record, contact: Contact, user_id: str, now: datetime) -> DeliveryOutcome:
    """Per item left out of the digest because its category's email (or the digest) is switched off."""
    detail = (
        "left out of the digest: user turned the email digest off"
        if not contact.digest
        else f"left out of the digest: user opted out of {row['category']} by email"
    )
    key = derived_key(row["idempotency_key"], "digest")
    return DeliveryOutcome(
        outcome_id=outcome_id(key, "suppressed:opted_out"),
        notification_id=row["notification_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        user_id=user_id,
        tier=Tier.MEDIUM,
        status=OutcomeStatus.SUPPRESSED,
        occurred_at=row["created_at"],
        recorded_at=now,
        channel=Channel.EMAIL,
        lane=Lane.PRIORITY,
        reason="opted_out",
        detail=detail,
        idempotency_key=key,
    )
