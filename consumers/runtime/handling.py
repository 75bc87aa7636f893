"""What a consumer's handler takes and returns: the contract between handlers and the runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["DeadLetter", "Handler", "Incoming", "Output", "Result", "dead_letter_headers"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce. ``value`` is already encoded."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The handler's verdict that a record cannot be processed, ever."""

    reason: str
    error_class: str = "Rejected"
    detail: str = ""


@dataclass(slots=True)
class Incoming(Generic[T]):
    """A decoded input record with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


Result = Sequence[Output] | DeadLetter


class Handler(Protocol[T]):
    """What a consumer plugs into the runner."""

    name: str

    def decode(self, raw: bytes) -> T:
        """Decode one record's value; raise :class:`DecodeError` for poison bytes."""
        ...

    async def handle(self, batch: Sequence[Incoming[T]]) -> Sequence[Result]:
        """Decide on a batch; return one result per input, in order.

        Raise :class:`~schemas.errors.DependencyUnavailable` when a dependency is down (the batch is
        retried), :class:`~schemas.errors.RecordError` when a record's content is at fault. Any
        exception but an outage is isolated to the offending record, which is dead-lettered
        (:mod:`consumers.runtime.isolate`). A handler may also define ``async def probe() -> bool``
        (do its servers answer?): the runtime's poison net asks it before blaming a record, and
        ``def prepare(batch) -> None``: called with a batch fetched ahead while the previous one is
        still handled, to start its lookups (it must not raise; ``handle`` reports failures).
        """
        ...


def dead_letter_headers(
    letter: DeadLetter, topic: str, partition: int, offset: int, group: str
) -> list[tuple[str, bytes]]:
    return [
        ("herald-dlq-reason", letter.reason.encode()),
        ("herald-dlq-error-class", letter.error_class.encode()),
        ("herald-dlq-detail", letter.detail[:1000].encode()),
        ("herald-source-topic", topic.encode()),
        ("herald-source-partition", str(partition).encode()),
        ("herald-source-offset", str(offset).encode()),
        ("herald-consumer-group", group.encode()),
    ]
