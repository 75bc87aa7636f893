"""What a provider fake accepted and the faults queued for its next sends.

The fake's server thread appends and the test reads, so every access holds ``lock``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["FakeState"]

F = TypeVar("F")


@dataclass
class FakeState(Generic[F]):
    """A fake's accepted messages (as its API reports them) and its pending faults of type ``F``;
    a fake with more to keep subclasses it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: list[F] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)

    def accepted(self) -> list[dict[str, Any]]:
        """A copy: the server thread may append while the caller reads."""
        with self.lock:
            return list(self.messages)

    def reset(self) -> None:
        """Forget the messages and the faults still pending."""
        with self.lock:
            self.messages.clear()
            self.faults.clear()
