"""A batch's two Redis reads, cancellation marks and ledger entries, in one round trip.

Both are an MGET of one key per message, before any provider call; at a trickle (a message or
two per batch) each was a round trip of its own, and Redis calls were about a third of a lightly
loaded consumer's CPU. When both read the same client, one MGET asks for both key sets.

Each keeps its own failure handling, as if it had made the call itself: Redis down fails both
open (nothing cancelled, nothing in the ledger), and each counts it in
``herald_dependency_errors_total{dependency="redis"}`` and logs it, as the two calls did. The
ledger's EXISTS pipeline for in-flight owners stays a second round trip, made only when another
process's claim was found, and its failure is the ledger's alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.exceptions import RedisError

from consumers.channel.cancelled import CancelCheck, cancelled_among
from consumers.channel.ledger import DeliveryLedger, Entry

__all__ = ["read_marks"]


async def _none() -> None:
    return None


async def read_marks(
    cancel_check: CancelCheck | None,
    ledger: DeliveryLedger | None,
    notification_ids: Sequence[str],
    idempotency_keys: Sequence[str],
) -> tuple[set[str], dict[str, Entry]]:
    """The cancelled notification ids and the ledger's entries by idempotency key."""
    if cancel_check is None or ledger is None or cancel_check.client is not ledger.client:
        # Not both, or on different clients (maybe different servers): each reads on its own.
        cancelled, entries = await asyncio.gather(
            cancel_check.cancelled(notification_ids) if cancel_check is not None else _none(),
            ledger.lookup(idempotency_keys) if ledger is not None else _none(),
            return_exceptions=True,
        )
        for answer in (cancelled, entries):  # in the order they would have run one after the other
            if isinstance(answer, BaseException):
                raise answer
        assert not isinstance(cancelled, BaseException) and not isinstance(entries, BaseException)
        return cancelled or set(), entries or {}
    nids = list(dict.fromkeys(notification_ids))
    keys = list(dict.fromkeys(idempotency_keys))
    if not nids and not keys:
        return set(), {}
    try:
        values = await ledger.client.mget(cancel_check.keys(nids) + ledger.keys(keys))
    except (RedisError, OSError) as exc:
        # Each fails open and accounts for it, as its own call would have.
        if nids:
            cancel_check.unavailable(exc, len(nids))
        if keys:
            ledger.lookup_failed(exc, len(keys))
        return set(), {}
    cancelled_ids = cancelled_among(nids, values[: len(nids)])
    return cancelled_ids, await ledger.entries(keys, values[len(nids) :])
