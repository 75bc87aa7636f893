"""What became of one message in a channel consumer's batch, before it is an outcome: the status,
the provider's answer if it was called, and why. Plus the few answers given without calling it."""

from __future__ import annotations

from dataclasses import dataclass

from channels.base import Outcome
from schemas.models import OutcomeStatus

__all__ = ["IN_FLIGHT_ELSEWHERE", "RECIPIENT_BACKOFF", "Done", "already_sent"]


@dataclass(frozen=True, slots=True)
class Done:
    status: OutcomeStatus
    outcome: Outcome | None = None
    reason: str | None = None
    detail: str | None = None
    duplicate: bool = False


RECIPIENT_BACKOFF = Done(
    OutcomeStatus.FAILED_RETRYABLE,
    reason="recipient_backoff",
    detail="not attempted: an earlier message to this recipient failed in the same batch",
)


IN_FLIGHT_ELSEWHERE = Done(
    OutcomeStatus.FAILED_RETRYABLE,
    reason="in_flight_elsewhere",
    detail="not attempted: another live process is sending this key; the retry will see its result",
)


def already_sent(provider: str, provider_id: str | None) -> Done:
    return Done(
        OutcomeStatus.SENT,
        Outcome.sent(provider, provider_id),
        detail="duplicate: already sent (delivery ledger)",
        duplicate=True,
    )
