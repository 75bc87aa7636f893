"""A poll batch decoded ahead: the next batch is fetched and decoded while the current one waits.

While batch N waits on PostgreSQL, Redis or the broker, the runner's next poll, the decoding of
batch N+1 and the handler's ``prepare`` (the classifier starts its profile lookups) run in those
gaps. Batch N+1 is still handled only after batch N's outputs are handed to the producer, so
outputs keep their order per partition; commits stay in order and after the acks.

A batch fetched ahead is dropped, and its partitions rewound, when batch N is replayed (its
offsets come again) and dropped when partitions were revoked since it was fetched (the
member that owns them now replays them from the last commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import ConsumerRecord

from consumers.runtime import metrics
from consumers.runtime.handling import DeadLetter, Handler, Incoming, Result
from schemas.codec import DecodeError

__all__ = ["Decoded", "decode_batch"]

T = TypeVar("T")


@dataclass
class Decoded(Generic[T]):
    """One poll batch: the records, what the handler gets, and dead letters for the rest."""

    batch: list[ConsumerRecord[bytes, bytes]]
    generation: int = 0  # the runner's assignment generation when it was fetched
    incoming: list[Incoming[T]] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # index in batch of each incoming record
    results: list[Result | None] = field(default_factory=list)


def decode_batch(
    handler: Handler[T], batch: list[ConsumerRecord[bytes, bytes]], max_bytes: int, generation: int = 0
) -> Decoded[T]:
    """Decode every record; tombstones, oversized and undecodable records become dead letters."""
    out: Decoded[T] = Decoded(batch, generation, results=[None] * len(batch))
    consumed: dict[str, int] = {}
    for i, r in enumerate(batch):
        consumed[r.topic] = consumed.get(r.topic, 0) + 1
        if r.value is None:
            out.results[i] = DeadLetter("malformed", "EmptyValue", "record has no value (tombstone)")
        elif len(r.value) > max_bytes:
            out.results[i] = DeadLetter("too_large", "RecordTooLarge", f"{len(r.value)} bytes > {max_bytes}")
        else:
            try:
                value = handler.decode(r.value)
            except DecodeError as exc:
                out.results[i] = DeadLetter(exc.reason, type(exc).__name__, exc.detail)
            else:
                out.incoming.append(
                    Incoming(r.topic, r.partition, r.offset, r.key, value, tuple(r.headers), r.timestamp)
                )
                out.pending.append(i)
    for topic, n in consumed.items():
        metrics.CONSUMED.labels(handler.name, topic).inc(n)
    return out
