"""Topic names (docs/architecture.md, "Topics and lanes"), in one place."""

from __future__ import annotations

from schemas.models import Channel, Lane

__all__ = ["Topics", "dlq"]


def dlq(topic: str) -> str:
    """Every topic T has its dead-letter topic T.dlq."""
    return f"{topic}.dlq"


class Topics:
    """Topic names under a prefix (``herald`` by default; tests use a fresh prefix each)."""

    def __init__(self, prefix: str = "herald") -> None:
        self.prefix = prefix
        self.events = f"{prefix}.events"
        self.outcomes = f"{prefix}.outcomes"
        self.receipts = f"{prefix}.receipts"
        self.fanout = f"{prefix}.events.fanout"  # one copy per subscriber of a topic event

    def channel(self, channel: Channel | str, lane: Lane | str) -> str:
        return f"{self.prefix}.channel.{Channel(channel).value}.{Lane(lane).value}"

    def channel_topics(self) -> list[str]:
        return [self.channel(c, lane) for c in Channel for lane in Lane]

    def all(self) -> list[str]:
        """Every topic Herald reads or writes, each with its DLQ."""
        base = [self.events, self.fanout, *self.channel_topics(), self.outcomes, self.receipts]
        return [t for topic in base for t in (topic, dlq(topic))]
