"""The ChannelMessages of one event share most of their fields: those are encoded once per event.

Only channel, recipient, idempotency key and ``not_before`` differ between the messages
:func:`consumers.classifier.decide.plan` makes for one event (``_EventPlan.message``); the ids,
template, locale, payload and times are encoded by the first message and reused by the others
(:mod:`schemas.segments`). The bytes are ``Codec.encode(message)``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.codec import Codec
from schemas.models import ChannelMessage
from schemas.segments import SegmentedEncoder

__all__ = ["PER_MESSAGE", "Family", "MessageEncoder"]

PER_MESSAGE = ("channel", "recipient", "idempotency_key", "not_before")


@dataclass(slots=True)
class Family:
    """The encoded fields shared by one event's messages, filled by the first message encoded."""

    parts: list[bytes] | None = None


class MessageEncoder:
    def __init__(self, codec: Codec) -> None:
        self._encoder = SegmentedEncoder(codec.latest(ChannelMessage.SCHEMA), PER_MESSAGE)

    def encode(self, message: ChannelMessage, family: Family | None = None) -> bytes:
        if family is None:
            return self._encoder.whole(message)
        if family.parts is None:
            family.parts = self._encoder.shared(message)
        return self._encoder.encode(family.parts, message)
