"""New in-app notifications pushed to connected users: PostgreSQL LISTEN → Server-Sent Events.

One LISTEN connection per API process (not one per client) hears ``herald_inbox`` (the
trigger of migration 060) and hands row ids to the open streams of that user. A stream reads
each row back scoped by its own user, so a notification can only reach its owner. Every event
carries the row's ``(created_at, id)`` as its SSE id; a client that reconnects with
``Last-Event-ID`` first gets the rows it missed. If the LISTEN connection drops, every stream
replays from its last event once the hub is back, so nothing is lost in between.

A stream ends when the credential that opened it expires (the client reconnects with a fresh one,
so a revoked or expired token stops receiving rows), and when its user is erased (``DELETE
/v1/recipients/{id}`` notifies the same channel with :func:`erasure_notice` in its transaction, so
every API process ends that user's streams in that tenant once the erasure commits, not at the
token's expiry). A user holds at most
``max_streams_per_user`` open streams (each one is a socket and a queue): a new stream closes the
user's oldest, not the other way round, because the oldest is the likeliest to be dead (a phone
that lost its network sends no FIN, and its socket stays open until TCP gives up) while the new
one is a live client reconnecting. The slot is taken when the body starts and given back in the
body's ``finally``: a response whose body never runs (the client left first) holds none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any

from channels.in_app.inbox_pg import decode_cursor, encode_cursor
from consumers.api.inbox_query import InboxQueries, InboxRow
from consumers.infra.pg_listen import PgListener

__all__ = ["CHANNEL", "InboxHub", "Subscription", "erasure_notice", "event_stream", "format_event"]

log = logging.getLogger(__name__)

CHANNEL = "herald_inbox"
_RESYNC = object()  # queue marker: notifications may have been missed, replay from the last event
_CLOSED = object()  # queue marker: the process is stopping
_QUEUE_MAX = 1000
_SEEN_MAX = 2000


class Subscription:
    def __init__(self, user_id: str, tenant: str = "") -> None:
        self.user_id = user_id
        self.tenant = tenant  # '' = the default tenant
        self.queue: asyncio.Queue[object] = asyncio.Queue(_QUEUE_MAX)
        self.ended: str | None = None  # why the hub closed it (a newer stream, an erasure)

    def end(self, why: str) -> None:
        """End this stream: its body sees ``ended`` at its next item and says why."""
        self.ended = why
        self.offer(_CLOSED)

    def replace(self) -> None:
        """End this stream for a newer one of the same user."""
        self.end("replaced by a newer stream")

    def offer(self, item: object) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:  # a stalled client: drop ids, replay from its last event later
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(_RESYNC)


class InboxHub:
    """Fans NOTIFY payloads out to subscriptions, keeping its LISTEN connection alive."""

    def __init__(self, dsn: str, *, reconnect_s: float = 1.0, max_streams_per_user: int = 0) -> None:
        self.max_streams_per_user = max_streams_per_user  # 0: unlimited
        # (tenant, user) -> its streams, oldest first (a dict keeps insertion order; a set does not)
        self._subs: dict[tuple[str, str], dict[Subscription, None]] = {}
        self._listener = PgListener(
            dsn,
            CHANNEL,
            self._on_payload,
            on_listen=self._on_listen,
            label="inbox stream",
            reconnect_s=reconnect_s,
        )
        self.listening = self._listener.listening
        self.closed = False

    def subscribe(self, user_id: str, tenant: str = "") -> Subscription:
        """A new stream of the user; past ``max_streams_per_user`` the user's oldest ones are closed."""
        subs = self._subs.setdefault((tenant, user_id), {})
        while self.max_streams_per_user and len(subs) >= self.max_streams_per_user:
            oldest = next(iter(subs))
            del subs[oldest]
            oldest.replace()
        sub = Subscription(user_id, tenant)
        subs[sub] = None
        return sub

    def open_streams(self, user_id: str, tenant: str = "") -> int:
        """How many streams of this user are subscribed now (a notification reaches them from here on)."""
        return len(self._subs.get((tenant, user_id), ()))

    def unsubscribe(self, sub: Subscription) -> None:
        key = (sub.tenant, sub.user_id)
        subs = self._subs.get(key)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._subs[key]

    def _broadcast(self, item: object, users: Iterable[tuple[str, str]] | None = None) -> None:
        for user in list(self._subs if users is None else users):
            for sub in list(self._subs.get(user, ())):
                sub.offer(item)

    def _on_payload(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
            key = (str(msg.get("tenant") or ""), str(msg["user_id"]))
            row_id = None if msg.get("erased") is True else str(msg["id"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring malformed %s notification: %.200s", CHANNEL, payload)
            return
        if row_id is None:
            for sub in list(self._subs.pop(key, ())):
                sub.end("user erased")
        elif key in self._subs:
            self._broadcast(row_id, [key])

    async def run(self, stopping: asyncio.Event) -> None:
        """A BackgroundLoop: listen until ``stopping``; reconnect (and resync streams) on loss."""
        await self._listener.run(stopping)
        self.close()

    def _on_listen(self, reconnected: bool) -> None:
        if reconnected:
            self._broadcast(_RESYNC)

    def close(self) -> None:
        """End every open stream (the server can then stop without waiting for clients)."""
        self.closed = True
        self._broadcast(_CLOSED)


def erasure_notice(tenant: str, user_id: str) -> str:
    """The ``herald_inbox`` notification that ends the user's open streams (the erasure's)."""
    return json.dumps({"erased": True, "tenant": tenant, "user_id": user_id}, separators=(",", ":"))


def format_event(row: InboxRow, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), default=str)
    return f"id: {row.event_id}\nevent: notification\ndata: {data}\n\n".encode()


class _Sent:
    """What one stream already sent (a bounded set, so a replay does not repeat rows) and the newest
    row among them: where a resync resumes."""

    def __init__(self, last_event_id: str | None, opened_at: datetime) -> None:
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._last: tuple[datetime, uuid.UUID] | None = (
            decode_cursor(last_event_id) if last_event_id else None
        )
        self._opened_at = opened_at

    def first_time(self, row: InboxRow) -> bool:
        """Record ``row`` as sent; False if it already was."""
        if row.id in self._ids:
            return False
        self._ids[row.id] = None
        if len(self._ids) > _SEEN_MAX:
            self._ids.popitem(last=False)
        if self._last is None or (row.created_at, row.id) > self._last:  # the newest row is where to resume
            self._last = (row.created_at, row.id)
        return True

    def resume_from(self) -> str:
        """The event id to replay after: the newest row sent, else the moment the stream opened."""
        if self._last is not None:
            return encode_cursor(*self._last)
        return encode_cursor(self._opened_at, uuid.UUID(int=0))


async def _rows_for(
    item: object, sub: Subscription, queries: InboxQueries, sent: _Sent, replay_max: int
) -> list[InboxRow]:
    """The rows a queue item stands for: a resync replays, a row id reads that row (if still live)."""
    if item is _RESYNC:
        return await queries.since(sub.user_id, sent.resume_from(), replay_max, sub.tenant)
    one = await queries.get(sub.user_id, uuid.UUID(str(item)), sub.tenant)
    return [one] if one is not None else []


async def event_stream(
    hub: InboxHub,
    user_id: str,
    tenant: str,
    queries: InboxQueries,
    *,
    last_event_id: str | None,
    heartbeat_s: float,
    replay_max: int,
    render: Callable[[InboxRow], dict[str, Any]],
    opened_at: datetime,
    lifetime_s: float | None = None,
) -> AsyncIterator[bytes]:
    """The body of ``GET /v1/inbox/stream``: subscribed before its replay (nothing slips in between),
    unsubscribed in its ``finally``; nothing is held before the body runs.

    ``last_event_id`` must be valid (the endpoint checks it). A resync with no event sent yet
    replays from ``opened_at``. After ``lifetime_s`` (the credential's remaining life) the stream
    ends; the client reconnects with a fresh credential and its last event id.
    """
    sent = _Sent(last_event_id, opened_at)
    loop = asyncio.get_running_loop()
    deadline = None if lifetime_s is None else loop.time() + lifetime_s
    sub = hub.subscribe(user_id, tenant)
    try:
        yield b"retry: 2000\n: connected\n\n"
        if last_event_id is not None:
            for row in await queries.since(sub.user_id, last_event_id, replay_max, sub.tenant):
                if sent.first_time(row):
                    yield format_event(row, render(row))
        while not hub.closed and sub.ended is None:  # the flag: a full queue may have lost _CLOSED
            left = heartbeat_s if deadline is None else min(heartbeat_s, deadline - loop.time())
            if left <= 0:
                yield b": credential expired\n\n"
                return
            try:
                item = await asyncio.wait_for(sub.queue.get(), left)
            except TimeoutError:
                if deadline is None or loop.time() < deadline:
                    yield b": keepalive\n\n"
                continue
            if item is _CLOSED:
                break
            for row in await _rows_for(item, sub, queries, sent, replay_max):
                if sent.first_time(row):
                    yield format_event(row, render(row))
        if sub.ended is not None:
            yield f": {sub.ended}\n\n".encode()
    finally:
        hub.unsubscribe(sub)
