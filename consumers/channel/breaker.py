"""A provider's circuit breaker as a pure state machine: state in, state out, ``now`` an argument.

::

    closed ──(N consecutive retryable failures, or error rate ≥ R over ≥ M calls in a window)──► open
    open ──(open_s elapsed; the next call is let through as a probe)──► half_open
    half_open ──(P probes succeed)──► closed
    half_open ──(a probe fails retryably)──► open (the clock restarts)

Only *retryable* failures count against a provider (throttling, 5xx, timeouts, refused
credentials). A permanent failure (a bad address, rejected content) is the message's fault
and proves the provider is up, so it counts as a success. An *ignored* result (a tenant's own
sender refused by this provider: one tenant's setup, not the provider's health) counts as
neither: a tenant must not open the breaker, nor flood it with successes that reset the
consecutive count and dilute the error rate; in half-open it gives its probe slot back. In half-open, at most P probes are
in flight; a probe that never reports (its process died) stops holding its slot after
``open_s``, so the breaker cannot wedge half-open.

The same functions run against the state every replica shares in Redis
(:mod:`consumers.channel.breakers`) and against a process-local copy when Redis is down.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

__all__ = ["BreakerPolicy", "BreakerState", "Circuit", "Result", "admit", "record", "retry_in"]


class Circuit(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def gauge(self) -> int:
        """The value of ``herald_provider_circuit_state``: 0 closed, 1 half-open, 2 open."""
        return {"closed": 0, "half_open": 1, "open": 2}[self.value]


class Result(StrEnum):
    """What one call to the provider came to, as the breaker sees it."""

    SUCCESS = "success"  # accepted
    PERMANENT = "permanent"  # refused for the message's own fault: the provider is up
    RETRYABLE = "retryable"  # the provider is failing
    IGNORED = "ignored"  # says nothing of the provider (a tenant's sender refused): not counted


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5  # open after this many retryable failures in a row
    error_rate: float = 0.5  # ... or this share of retryable failures in the window
    min_calls: int = 20  # ... counted only once the window holds this many calls
    window_s: float = 30.0  # the error-rate window (fixed, restarted when it elapses)
    open_s: float = 15.0  # how long an open breaker refuses before it lets a probe through
    half_open_probes: int = 3  # probes in flight at once, and successes needed to close

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.min_calls < 1 or self.half_open_probes < 1:
            raise ValueError("consecutive_failures, min_calls and half_open_probes must be >= 1")
        if not 0.0 < self.error_rate <= 1.0 or self.window_s <= 0 or self.open_s <= 0:
            raise ValueError("error_rate must be in (0, 1]; window_s and open_s positive")


@dataclass(frozen=True, slots=True)
class BreakerState:
    circuit: Circuit = Circuit.CLOSED
    since: float = 0.0  # when the circuit entered its state (open: when it opened)
    consecutive: int = 0  # retryable failures in a row (closed)
    window_start: float = 0.0
    calls: int = 0  # calls recorded in the window (closed)
    failures: int = 0  # retryable failures in the window (closed)
    probes: int = 0  # probes let through (half-open)
    probe_since: float = 0.0  # when the oldest probe slot still held was handed out
    successes: int = 0  # successful probes (half-open)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> BreakerState:
        data = json.loads(raw)
        data["circuit"] = Circuit(data["circuit"])
        return cls(**data)


def _closed(now: float) -> BreakerState:
    return BreakerState(Circuit.CLOSED, since=now, window_start=now)


def _open(now: float) -> BreakerState:
    return BreakerState(Circuit.OPEN, since=now)


def admit(state: BreakerState, policy: BreakerPolicy, now: float) -> tuple[BreakerState, bool]:
    """May a call go to this provider now? The new state (a probe slot taken) and the answer. Pure."""
    if state.circuit is Circuit.CLOSED:
        return state, True
    if state.circuit is Circuit.OPEN:
        if now - state.since < policy.open_s:
            return state, False
        return BreakerState(Circuit.HALF_OPEN, since=now, probes=1, probe_since=now), True
    if state.probes >= policy.half_open_probes and now - state.probe_since >= policy.open_s:
        # Probes handed out long ago never reported (their process died): free their slots.
        state = replace(state, probes=state.successes, probe_since=now)
    if state.probes >= policy.half_open_probes:
        return state, False
    return replace(state, probes=state.probes + 1), True


def record(state: BreakerState, policy: BreakerPolicy, now: float, result: Result) -> BreakerState:
    """The state after a call finished with ``result``. Pure.

    A result that arrives while open (a call let through before the breaker opened) changes
    nothing: the breaker already knows.
    """
    if state.circuit is Circuit.OPEN:
        return state
    if result is Result.IGNORED:  # not counted; a half-open probe's slot goes to the next call
        if state.circuit is Circuit.HALF_OPEN:
            return replace(state, probes=max(state.successes, state.probes - 1))
        return state
    if state.circuit is Circuit.HALF_OPEN:
        if result is Result.RETRYABLE:
            return _open(now)
        successes = state.successes + 1
        if successes >= policy.half_open_probes:
            return _closed(now)
        return replace(state, successes=successes)
    if now - state.window_start >= policy.window_s or now < state.window_start:
        state = replace(state, window_start=now, calls=0, failures=0)
    failed = result is Result.RETRYABLE
    calls, failures = state.calls + 1, state.failures + failed
    consecutive = state.consecutive + 1 if failed else 0
    if consecutive >= policy.consecutive_failures or (
        failed and calls >= policy.min_calls and failures >= policy.error_rate * calls
    ):
        return _open(now)
    return replace(state, consecutive=consecutive, calls=calls, failures=failures)


def retry_in(state: BreakerState, policy: BreakerPolicy, now: float) -> float:
    """Seconds until an open breaker lets a probe through (0 when it would now). Pure."""
    if state.circuit is not Circuit.OPEN:
        return 0.0
    return max(0.0, policy.open_s - (now - state.since))
