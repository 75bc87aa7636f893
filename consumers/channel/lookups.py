"""What a channel consumer looks up once per batch, before any provider call, all at once.

Four independent reads: which notifications a ``herald.cancel`` stopped (Redis), what the
delivery ledger holds for each idempotency key (Redis; both in one MGET,
:mod:`consumers.channel.redis_reads`), which addresses are on the suppression list (PostgreSQL)
and the custom properties of recipients whose templates read ``recipient`` (PostgreSQL). They run
concurrently, so a batch waits for the slowest of them, not their sum.
A failure is raised as it would have been had they run one after the other (cancellation check,
ledger, suppression list, properties): the first in that order wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from channels.templates import TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.ledger import DeliveryLedger, Entry
from consumers.channel.redis_reads import read_marks
from consumers.infra.recipient_properties import RecipientKey, RecipientProperties
from consumers.runtime.handling import Incoming
from schemas.models import Channel, ChannelMessage

__all__ = ["BatchFacts", "SuppressionList", "look_up", "renderer_reads"]

T = TypeVar("T")


class SuppressionList(Protocol):
    async def suppressed(self, channel: str, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` must not be sent to (raises DependencyUnavailable if unknown)."""
        ...


@dataclass(slots=True)
class BatchFacts:
    cancelled: set[str] = field(default_factory=set)  # notification ids
    entries: dict[str, Entry] = field(default_factory=dict)  # idempotency key -> ledger entry
    blocked: set[str] = field(default_factory=set)  # suppressed addresses
    props: dict[RecipientKey, dict[str, Any]] = field(default_factory=dict)


async def _nothing(value: T) -> T:
    return value


async def look_up(
    batch: Sequence[Incoming[ChannelMessage]],
    channel: Channel,
    *,
    cancel_check: CancelCheck | None,
    ledger: DeliveryLedger | None,
    suppressions: SuppressionList | None,
    properties: RecipientProperties | None,
    uses_recipient: Callable[[ChannelMessage], bool] | None,
) -> BatchFacts:
    """The batch's facts; ``uses_recipient`` None: no template of this consumer reads properties."""
    messages = [item.value for item in batch]
    # One Redis round trip for both the cancellation marks and the ledger entries.
    marks = read_marks(
        cancel_check, ledger, [m.notification_id for m in messages], [m.idempotency_key for m in messages]
    )
    blocked: Awaitable[set[str]] = (
        suppressions.suppressed(channel.value, {m.recipient for m in messages})
        if suppressions is not None
        else _nothing(set())
    )
    wanted = (
        [(m.tenant or "", m.user_id) for m in messages if m.channel == channel and uses_recipient(m)]
        if properties is not None and uses_recipient is not None
        else []
    )
    props: Awaitable[dict[RecipientKey, dict[str, Any]]] = (
        properties.get_many(wanted) if properties is not None and wanted else _nothing({})
    )
    got = await asyncio.gather(marks, blocked, props, return_exceptions=True)
    for answer in got:  # in the order they would have run one after the other
        if isinstance(answer, BaseException):
            raise answer
    m, b, p = got
    assert not isinstance(m, BaseException)
    assert not isinstance(b, BaseException) and not isinstance(p, BaseException)
    return BatchFacts(m[0], m[1], b, p)


def renderer_reads(
    renderer: TemplateRenderer | None, own_render: object
) -> Callable[[ChannelMessage], bool] | None:
    """The check for messages whose templates read ``recipient`` (None: this consumer never renders
    with properties: the adapter renders its own body, or there is no renderer)."""
    if renderer is None or own_render is not None:
        return None
    return renderer.uses_recipient
