"""A no-op consumer: decodes each domain event and forwards its bytes unchanged.

The baseline for benchmarks (runtime overhead vs raw aiokafka) and the smallest real
consumer for ``make run`` and the runtime's crash tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumers.runtime.handling import Incoming, Output, Result
from schemas.codec import Codec, default_codec
from schemas.models import DomainEvent

__all__ = ["PassThrough"]


class PassThrough:
    name = "passthrough"

    def __init__(self, target_topic: str, codec: Codec | None = None) -> None:
        self.target = target_topic
        self.codec = codec or default_codec()

    def decode(self, raw: bytes) -> tuple[DomainEvent, bytes]:
        return self.codec.decode(raw, DomainEvent), raw

    async def handle(self, batch: Sequence[Incoming[tuple[DomainEvent, bytes]]]) -> Sequence[Result]:
        return [[Output(self.target, item.value[1], item.key)] for item in batch]
