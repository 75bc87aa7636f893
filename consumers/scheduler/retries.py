"""The retry planner: when a failed_retryable delivery is tried again, and how.

Both functions are pure: the clock (``now``) and the randomness (``rand``) come in as
arguments, so every schedule is a table in the tests. The fallback consumer calls
:func:`plan_retry` on each ``failed_retryable`` outcome, arms the returned timer in the
scheduler (a row in PostgreSQL, never a sleep) and publishes ``exhausted`` when it gets
``None``. The timer's kind is ``retry``: the fallback fires it through the same consent check
as a first send (preferences, quiet hours; ``consumers/fallback/retrying.py``).

A retry re-sends the outcome's own ChannelMessage with ``attempt + 1`` and the **same**
idempotency key (webhooks send it as ``webhook-id``; receivers dedupe on it). The timer's
key is derived from that idempotency key and the attempt number, so replaying the same
outcome arms the same timer once.

Only tries that reached a provider use up the schedule. An outcome whose message was never handed
to one (:data:`NOT_ATTEMPTED`: every provider's breaker open, the recipient backing off, another
process sending the key, the batch past its deadline) still gets ``attempt + 1`` (each send has
its own outcome id and timer key), but the timer records the real tries (``data.tried``), the
sends not attempted (``data.skipped``) and when retrying began (``data.since``). So a provider
outage spent on open breakers does not end the message ``exhausted`` without one real try. Two
things keep such sends from running away (:func:`step_of`, :func:`run_bound`): each one not
attempted moves the delay half a step on (two of them wait as long as one real try), and the
run ends once the schedule's own wall time has passed since retrying began, attempted or not, as
it would have had every send reached a provider: a high-tier push still escalates within its
schedule's time, and a message makes at most ``3 x steps + 2`` sends (14 for push).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consumers.infra.backoff import jittered
from consumers.infra.keys import derived_key
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Timer
from schemas.codec import Codec
from schemas.models import Channel, DeliveryOutcome, OutcomeStatus

__all__ = [
    "KIND_RETRY",
    "NOT_ATTEMPTED",
    "Tries",
    "count_tries",
    "longest_run",
    "next_delay",
    "plan_retry",
    "retry_timer_key",
    "run_bound",
    "step_of",
    "tries_of",
    "was_attempted",
]

KIND_RETRY = "retry"

# The reasons a channel consumer gives a failed_retryable outcome it produced without calling a
# provider (consumers/channel: failover.py, done.py, consumer.py).
NOT_ATTEMPTED = frozenset({"circuit_open", "recipient_backoff", "in_flight_elsewhere", "batch_deadline"})


def was_attempted(outcome: DeliveryOutcome) -> bool:
    """Whether a provider was asked to take the message (a refusal, a timeout, a bug all count). Pure."""
    return outcome.reason not in NOT_ATTEMPTED


@dataclass(frozen=True, slots=True)
class Tries:
    """A message's retrying so far: sends that reached a provider (``tried``), sends that did not
    (``skipped``), and when the first retry was planned (the run's bound counts from it)."""

    tried: int
    since: datetime
    skipped: int = 0


def tries_of(data: Mapping[str, Any]) -> Tries | None:
    """What a retry timer's data recorded (None for a timer armed before it did). Pure."""
    tried, since, skipped = data.get("tried"), data.get("since"), data.get("skipped", 0)
    if not isinstance(tried, int) or not isinstance(since, str) or not isinstance(skipped, int):
        return None
    return Tries(tried, datetime.fromisoformat(since), skipped)


def count_tries(attempt: int, before: Tries | None, *, attempted: bool, now: datetime) -> Tries:
    """The tries after send ``attempt`` failed. ``before``: what the timer that sent it recorded;
    None for a first send, or a retry armed by an older version (then every earlier send counts
    as a real try, as it did). Pure."""
    if before is None:
        before = Tries(attempt - 1, now)
    if attempted:
        return Tries(before.tried + 1, before.since, before.skipped)
    return Tries(before.tried, before.since, before.skipped + 1)


def step_of(tries: Tries, steps: int) -> int:
    """The 1-based step of the schedule the next delay takes: one per real try, one per two sends
    not attempted (so an outage's retries slow down as a real failure's would, at half the pace:
    a breaker that lets one probe through now and then still gets its probes), within the
    schedule. A run of real tries only keeps the schedule it always had. Pure."""
    return min(max(tries.tried + tries.skipped // 2, 1), steps)


def run_bound(schedule: Sequence[float], jitter: float) -> timedelta:
    """How long after the first retry was planned (``since``) a failed send still gets another:
    the schedule's own wall time, its steps at their longest jitter. A run of real refusals
    without ``Retry-After`` has had its last retry by then, so this changes nothing for it; an
    outage spent on open breakers ends then too, so a high-tier push escalates as soon as a run of
    refusals would have made it (not a day later). Pure."""
    return timedelta(seconds=sum(schedule) * (1.0 + jitter))


def longest_run(schedule: Sequence[float], jitter: float) -> timedelta:
    """How long after ``since`` a message's last retry may still be sent: the bound, then at most
    the schedule's longest step (a ``Retry-After`` is clamped to it). Whatever remembers a retried
    key (the delivery ledger) must remember it this long. Pure."""
    return run_bound(schedule, jitter) + timedelta(seconds=max(schedule, default=0.0))


def next_delay(
    attempt: int, schedule: Sequence[float], *, jitter: float, rand: float, retry_after: float | None = None
) -> float | None:
    """Delay before attempt+1 after `attempt` failed (1-based); None when the schedule is used up.

    The step is :func:`~consumers.infra.backoff.jittered`: ``rand`` in [0, 1) spreads it
    uniformly within ±``jitter`` of itself, so retries of many messages that failed together
    spread out instead of hammering a recovering receiver at once. Nothing waits longer than
    the schedule's longest step, and a provider's ``retry_after`` is honoured as a floor up
    to that step, so a hostile ``Retry-After: 99999999`` cannot park a message forever.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if attempt > len(schedule):
        return None
    step = float(schedule[attempt - 1])
    if step < 0:
        raise ValueError(f"negative step in retry schedule: {step}")
    return jittered(step, cap=float(max(schedule)), jitter=jitter, rand=rand, retry_after=retry_after)


def retry_timer_key(idempotency_key: str, next_attempt: int) -> str:
    """The scheduler key of the timer that sends ``next_attempt`` (deterministic: replay-safe)."""
    return derived_key(idempotency_key, f"retry:{next_attempt}")


def plan_retry(
    outcome: DeliveryOutcome,
    schedules: Mapping[str, Sequence[float]],
    *,
    jitter: float,
    now: datetime,
    rand: float,
    topics: Topics,
    codec: Codec,
    opt_in: bool = False,
    before: Tries | None = None,
) -> Timer | None:
    """The scheduler Timer (kind ``retry``) that re-sends outcome.message with attempt+1 and the SAME
    idempotency key to its channel topic at now+delay; None when retries are exhausted.

    ``None`` also when the channel has no schedule (no retries configured) and when the retry
    would be due at or after the message's ``expires_at`` (a late retry is worthless).
    ``opt_in``: the message's channel is an opt-in one of its route; the timer's data says so
    (``data.opt_in``, as a deferral's), for the consent check at release, which the message cannot tell.
    ``before``: the tries the timer that sent this attempt recorded (:func:`count_tries`). A send
    that was not attempted (:func:`was_attempted`) does not use up the schedule; each waits
    :func:`step_of`. None once the real tries used up the schedule's steps (as before), or once
    :func:`run_bound` has passed since the first retry was planned, attempted or not.
    Raises ``ValueError`` for an outcome that is not ``failed_retryable`` or carries no
    message: that is a contract violation by the producer of the outcome, not an exhaustion.
    """
    if outcome.status != OutcomeStatus.FAILED_RETRYABLE:
        raise ValueError(f"plan_retry takes failed_retryable outcomes, got {outcome.status}")
    message = outcome.message
    if message is None:
        raise ValueError(f"outcome {outcome.outcome_id} has no message to retry")
    schedule = schedules.get(Channel(message.channel).value)
    if not schedule:
        return None
    attempt = max(outcome.attempt, message.attempt)
    attempted = was_attempted(outcome)
    tries = count_tries(attempt, before, attempted=attempted, now=now)
    if tries.tried > len(schedule) or now >= tries.since + run_bound(schedule, jitter):
        return None
    retry_after = None if outcome.retry_after_ms is None else outcome.retry_after_ms / 1000.0
    delay = next_delay(
        step_of(tries, len(schedule)), schedule, jitter=jitter, rand=rand, retry_after=retry_after
    )
    if delay is None:
        return None
    due_at = now + timedelta(seconds=delay)
    if message.expires_at is not None and due_at >= message.expires_at:
        return None
    retry = dataclasses.replace(message, attempt=attempt + 1)
    # The channel topics' key (docs/architecture.md, "Topics and lanes"): webhooks are keyed by
    # endpoint id (the recipient), the other channels by user.
    msg_key = message.recipient if message.channel == Channel.WEBHOOK else message.user_id
    data: dict[str, str | int | bool] = {
        "notification_id": message.notification_id,
        "attempt": attempt + 1,
        "channel": Channel(message.channel).value,
        "tenant": message.tenant or "",  # its record key names only the user: erasure's scope
        "tried": tries.tried,
        "skipped": tries.skipped,
        "since": tries.since.isoformat(),
    }
    if opt_in:
        data["opt_in"] = True
    return Timer(
        key=retry_timer_key(message.idempotency_key, attempt + 1),
        kind=KIND_RETRY,
        due_at=due_at,
        topic=topics.channel(message.channel, message.lane),
        msg_key=msg_key.encode(),
        payload=codec.encode(retry),
        data=data,
    )
