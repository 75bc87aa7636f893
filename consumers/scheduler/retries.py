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
sends not attempted (``data.skipped``) and when retrying began (``data.since``).

When a run ends (:func:`plan_retry`): a send that reached a provider ends it only once the real
tries used up the schedule (no time limit, as ever: a backlog or a scheduler outage does not cut
real tries short). A send not attempted ends it once the run is old enough: where exhaustion
escalates (a high-tier push), at :func:`run_bound`, the schedule's own wall time, so the email
goes out as soon as a run of refusals would have sent it; elsewhere at ``max_age_s``
(``HERALD_FALLBACK__UNATTEMPTED_MAX_AGE_S``, a day), so a provider outage shorter than that ends
no message exhausted. Such sends slow down (:func:`wait_of`): each moves the delay half a step
on, and (in a run that ends at the max age) past the schedule it doubles from the last step up
to :data:`PAST_SCHEDULE_CAP_S`: a day-long outage costs a push message 42 sends at most
(tests/unit/consumers/scheduler/test_retries_tries.py).
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
    "PAST_SCHEDULE_CAP_S",
    "Tries",
    "count_tries",
    "longest_run",
    "next_delay",
    "past_schedule_cap",
    "plan_retry",
    "retry_timer_key",
    "run_bound",
    "step_of",
    "tries_of",
    "wait_of",
    "was_attempted",
]

KIND_RETRY = "retry"
# Sends not attempted past the schedule wait twice as long each time (per two sends), from the
# schedule's last step up to this (or the schedule's longest step, when that is longer).
PAST_SCHEDULE_CAP_S = 3600.0

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


def past_schedule_cap(schedule: Sequence[float]) -> float:
    """The longest wait of a send not attempted: :data:`PAST_SCHEDULE_CAP_S`, or the schedule's
    longest step when that is longer (a webhook's 10 h). Pure."""
    return max(PAST_SCHEDULE_CAP_S, max(schedule, default=0.0))


def wait_of(tries: Tries, schedule: Sequence[float], *, grows: bool) -> tuple[float, float]:
    """The next delay before jitter, and its cap. Within the schedule: its step (:func:`step_of`),
    capped at its longest. ``grows`` (a send not attempted whose run ends at the max age, not the
    schedule's time): past the schedule (step number tried + skipped // 2 beyond its length) the
    last step doubled once per step beyond, up to :func:`past_schedule_cap`: an outage of a day
    costs a few dozen sends, not one per step. Pure."""
    steps = len(schedule)
    number = max(tries.tried + tries.skipped // 2, 1)
    if not grows or number <= steps:
        return float(schedule[step_of(tries, steps) - 1]), float(max(schedule))
    cap = past_schedule_cap(schedule)
    # the exponent is bounded: the cap is reached long before 2**64
    return min(float(schedule[-1]) * 2.0 ** min(number - steps, 64), cap), cap


def run_bound(schedule: Sequence[float], jitter: float) -> timedelta:
    """How long after the first retry was planned (``since``) a send not attempted still gets
    another when the run's exhaustion escalates: the schedule's own wall time, its steps at their
    longest jitter. A run of real refusals without ``Retry-After`` has had its last retry by then,
    so a high-tier push whose provider is out escalates as soon as refusals would have made it.
    Pure."""
    return timedelta(seconds=sum(schedule) * (1.0 + jitter))


def longest_run(schedule: Sequence[float], jitter: float, max_age_s: float) -> timedelta:
    """How long after ``since`` a message's last retry may still be sent: sends not attempted end
    at the later of :func:`run_bound` and ``max_age_s``, the last one planned then waits at most
    :func:`past_schedule_cap`; every later send must have reached a provider, and at most one per
    step of the schedule does, each waiting at most its longest step (a ``Retry-After`` is
    clamped to it). Whatever remembers a retried key (the delivery ledger) must remember it this
    long. Pure."""
    end = max(run_bound(schedule, jitter), timedelta(seconds=max_age_s))
    tail = past_schedule_cap(schedule) + len(schedule) * max(schedule, default=0.0)
    return end + timedelta(seconds=tail)


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
    escalates: bool = False,
    max_age_s: float = 86_400.0,
) -> Timer | None:
    """The scheduler Timer (kind ``retry``) that re-sends outcome.message with attempt+1 and the SAME
    idempotency key to its channel topic at now+delay; None when retries are exhausted.

    ``None`` also when the channel has no schedule (no retries configured) and when the retry
    would be due at or after the message's ``expires_at`` (a late retry is worthless).
    ``opt_in``: the message's channel is an opt-in one of its route; the timer's data says so
    (``data.opt_in``, as a deferral's), for the consent check at release, which the message cannot tell.
    ``before``: the tries the timer that sent this attempt recorded (:func:`count_tries`). A send
    that was not attempted (:func:`was_attempted`) does not use up the schedule; each waits
    :func:`wait_of`. None once the real tries used up the schedule's steps (as before), or, for a
    send not attempted, once the run is older than :func:`run_bound` (``escalates``: its
    exhaustion escalates, which must not wait) or ``max_age_s``.
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
    if tries.tried > len(schedule):
        return None
    if not attempted:
        bound = run_bound(schedule, jitter) if escalates else timedelta(seconds=max_age_s)
        if now >= tries.since + bound:
            return None
    retry_after = None if outcome.retry_after_ms is None else outcome.retry_after_ms / 1000.0
    step, cap = wait_of(tries, schedule, grows=not attempted and not escalates)
    if step < 0:
        raise ValueError(f"negative step in retry schedule: {step}")
    delay = jittered(step, cap=cap, jitter=jitter, rand=rand, retry_after=retry_after)
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
