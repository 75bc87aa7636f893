"""A route's workflow: the steps after classification, parsed and validated from the routing file.

Pure: no clock, no I/O. :func:`parse_steps` turns the YAML ``steps:`` list into step values
and :func:`validate` refuses workflows that cannot work, with errors naming the route and the
step (``route 3 (match 'login_code'): step 2 (wait): ...``).

Semantics, which the executor (``consumers.workflow.executor``) implements:

* ``send``: the channels, ``all`` at once or the ``first`` the user can be reached on.
* ``wait``: a fixed pause (``wait: 5m``), or ``until: read|delivered`` with a ``timeout``: when
  the receipt arrives first the workflow is done (the user was reached); at the timeout the
  next step runs.
* ``escalate``: send to other channels unless a receipt (delivered, opened or read) of the
  notification exists by then.
* ``digest``: the notification joins the user's digest for this route (one per ``window``),
  sent ``send_after`` after its first item, listing at most ``max_items``; always the last step.
* ``throttle``: at most ``limit`` notifications of this route per user per ``per`` window; the
  rest are dropped (``overflow: drop``) or go to the route's digest (``overflow: digest``).
* ``delay``: hold the whole notification for a while.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pytimeparse.timeparse import timeparse as _parse_duration

from schemas.errors import ConfigurationError
from schemas.models import Channel

__all__ = [
    "MAX_DURATION_S",
    "MAX_STEPS",
    "Delay",
    "Digest",
    "Escalate",
    "Overflow",
    "Send",
    "SendMode",
    "Step",
    "StepError",
    "Throttle",
    "Wait",
    "WaitFor",
    "parse_duration",
    "parse_steps",
    "sends",
    "validate",
]

MAX_DURATION_S = 366 * 86_400.0
"""No step waits more than a year: a longer one is a typo (``3000d``), not a plan."""

MAX_STEPS = 50
"""A route has at most 50 steps: every run keeps a copy of them, and 50 year-long waits is no plan."""


class StepError(ConfigurationError, ValueError):
    """A workflow step is invalid; the message names the route and the step."""


class SendMode(StrEnum):
    ALL = "all"  # every channel at once
    FIRST = "first"  # the first channel the user can be reached on (address and consent)


class WaitFor(StrEnum):
    DELIVERED = "delivered"  # any receipt: delivered, opened or read
    READ = "read"


class Overflow(StrEnum):
    DROP = "drop"
    DIGEST = "digest"


@dataclass(frozen=True, slots=True)
class Send:
    channels: tuple[Channel, ...]
    mode: SendMode = SendMode.ALL
    opt_in: tuple[Channel, ...] = ()  # sent only when the user enabled (category, channel)

    kind: ClassVar[str] = "send"


@dataclass(frozen=True, slots=True)
class Wait:
    duration_s: float | None = None  # a fixed pause
    until: WaitFor | None = None  # or: until this receipt, at most timeout_s
    timeout_s: float | None = None

    kind: ClassVar[str] = "wait"

    @property
    def bound_s(self) -> float:
        """How long this step can last at most (validated: always bounded)."""
        return float(self.duration_s if self.duration_s is not None else self.timeout_s or 0.0)


@dataclass(frozen=True, slots=True)
class Escalate:
    channels: tuple[Channel, ...]

    kind: ClassVar[str] = "escalate"


@dataclass(frozen=True, slots=True)
class Digest:
    channel: Channel
    window_s: float
    send_after_s: float = 60.0
    max_items: int = 10

    kind: ClassVar[str] = "digest"


@dataclass(frozen=True, slots=True)
class Throttle:
    limit: int
    per_s: float
    overflow: Overflow = Overflow.DROP

    kind: ClassVar[str] = "throttle"


@dataclass(frozen=True, slots=True)
class Delay:
    duration_s: float

    kind: ClassVar[str] = "delay"


_E = TypeVar("_E", bound=StrEnum)

Step = Send | Wait | Escalate | Digest | Throttle | Delay
_KINDS = ("send", "wait", "escalate", "digest", "throttle", "delay")


def parse_duration(value: Any, what: str) -> float:
    """``"30s"``, ``"5m"``, ``"24h"``, ``"3d"``, ``"1h30m"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration like 30s, 5m, 24h or 3d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (parsed := _parse_duration(value.strip())) is not None:
        seconds = float(parsed)
    else:
        raise ValueError(f"{what}: expected a duration like 30s, 5m, 24h or 3d, got {value!r}")
    if not 0 < seconds <= MAX_DURATION_S:
        raise ValueError(f"{what}: {value!r} is out of range (more than 0, at most 366d)")
    return seconds


def _channel_list(value: Any, what: str) -> tuple[Channel, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what}: expected a non-empty list of channels")
    out: list[Channel] = []
    for name in value:
        try:
            channel = Channel(name)
        except ValueError:
            known = ", ".join(c.value for c in Channel)
            raise ValueError(f"unknown channel {name!r} in {what} (choose from {known})") from None
        if channel in out:
            raise ValueError(f"channel {name!r} listed twice in {what}")
        out.append(channel)
    return tuple(out)


def _options(value: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a mapping with {', '.join(sorted(allowed))}")
    extra = set(value) - allowed
    if extra:
        raise ValueError(f"{what}: unknown option(s) {', '.join(sorted(extra))}")
    return value


def _choice(kind: type[_E], value: Any, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not one of {', '.join(k.value for k in kind)}") from None


def _send(value: Any) -> Send:
    if not isinstance(value, dict):
        return Send(_channel_list(value, "send"))
    opts = _options(value, {"channels", "mode", "opt_in"}, "send")
    opt_in = _channel_list(opts["opt_in"], "send.opt_in") if opts.get("opt_in") else ()
    channels = _channel_list(opts.get("channels"), "send.channels")
    both = set(channels) & set(opt_in)
    if both:
        raise ValueError(f"{', '.join(sorted(both))} in both send.channels and send.opt_in")
    return Send(channels, _choice(SendMode, opts.get("mode", "all"), "send.mode"), opt_in)


def _wait(value: Any) -> Wait:
    if not isinstance(value, dict):
        return Wait(duration_s=parse_duration(value, "wait"))
    opts = _options(value, {"until", "timeout"}, "wait")
    if opts.get("until") is None:
        raise ValueError("wait: 'until' (read or delivered) needs a 'timeout'; a pause is 'wait: 5m'")
    until = _choice(WaitFor, opts["until"], "wait.until")
    if opts.get("timeout") is None:
        raise ValueError(f"wait until {until.value} has no timeout: it could wait forever (add timeout: 24h)")
    return Wait(until=until, timeout_s=parse_duration(opts["timeout"], "wait.timeout"))


def _digest(value: Any) -> Digest:
    opts = _options(value, {"window", "send_after", "max_items", "channel"}, "digest")
    if opts.get("channel") is None:
        raise ValueError("digest has no channel (add channel: email)")
    (channel,) = _channel_list([opts["channel"]], "digest.channel")
    max_items = opts.get("max_items", 10)
    if isinstance(max_items, bool) or not isinstance(max_items, int) or not 1 <= max_items <= 1000:
        raise ValueError(f"digest.max_items: expected a whole number from 1 to 1000, got {max_items!r}")
    if opts.get("window") is None:
        raise ValueError("digest has no window (add window: 1h)")
    return Digest(
        channel=channel,
        window_s=parse_duration(opts["window"], "digest.window"),
        send_after_s=parse_duration(opts.get("send_after", 60), "digest.send_after"),
        max_items=max_items,
    )


def _throttle(value: Any) -> Throttle:
    opts = _options(value, {"limit", "per", "overflow"}, "throttle")
    limit = opts.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"throttle.limit: expected a whole number of at least 1, got {limit!r}")
    if opts.get("per") is None:
        raise ValueError("throttle has no window (add per: 1d)")
    return Throttle(
        limit=limit,
        per_s=parse_duration(opts["per"], "throttle.per"),
        overflow=_choice(Overflow, opts.get("overflow", "drop"), "throttle.overflow"),
    )


def _one(value: Any) -> Step:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"expected one of {', '.join(_KINDS)} (e.g. '- send: [push]'), got {value!r}")
    ((kind, body),) = value.items()
    if kind == "send":
        return _send(body)
    if kind == "wait":
        return _wait(body)
    if kind == "escalate":
        return Escalate(_channel_list(body, "escalate"))
    if kind == "digest":
        return _digest(body)
    if kind == "throttle":
        return _throttle(body)
    if kind == "delay":
        return Delay(parse_duration(body, "delay"))
    raise ValueError(f"unknown step {kind!r} (choose from {', '.join(_KINDS)})")


def _label(i: int, value: Any) -> str:
    kind = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else "?"
    return f"step {i} ({kind})"


def parse_steps(where: str, value: Any) -> tuple[Step, ...]:
    """Parse and validate a route's ``steps:`` list; errors start with ``where`` and the step."""
    if not isinstance(value, list) or not value:
        raise StepError(f"{where}: 'steps' must be a non-empty list")
    if len(value) > MAX_STEPS:
        raise StepError(f"{where}: {len(value)} steps: at most {MAX_STEPS}")
    steps: list[Step] = []
    for i, raw in enumerate(value, start=1):
        try:
            steps.append(_one(raw))
        except ValueError as exc:
            raise StepError(f"{where}: {_label(i, raw)}: {exc}") from None
    validate(where, steps)
    return tuple(steps)


def sends(steps: Sequence[Step]) -> tuple[Channel, ...]:
    """Every channel a workflow may send on, in first-use order."""
    out: list[Channel] = []
    for step in steps:
        if isinstance(step, Send):
            chans: tuple[Channel, ...] = step.channels + step.opt_in
        elif isinstance(step, Escalate):
            chans = step.channels
        elif isinstance(step, Digest):
            chans = (step.channel,)
        else:
            continue
        out += [c for c in chans if c not in out]
    return tuple(out)


def _check(i: int, step: Step, steps: Sequence[Step], seen_send: bool) -> str | None:
    """Why step ``i`` (1-based) cannot work in this position; None when it can."""
    last = i == len(steps)
    if isinstance(step, Escalate) and not seen_send:
        return "escalate before any send: there is nothing to escalate from"
    if isinstance(step, Wait) and last:
        return "a wait at the end does nothing (remove it or add the step it waits for)"
    if isinstance(step, Delay) and last:
        return "a delay at the end does nothing"
    if isinstance(step, Digest) and not last:
        return "digest must be the last step (the notification leaves the workflow into the digest)"
    if isinstance(step, Wait) and step.until is not None and not seen_send:
        return f"wait until {step.until.value} before any send: no receipt can come"
    if isinstance(step, Throttle) and step.overflow is Overflow.DIGEST and not isinstance(steps[-1], Digest):
        return "overflow: digest needs a digest step at the end of the workflow"
    return None


def validate(where: str, steps: Sequence[Step]) -> None:
    """Refuse a workflow that can never send or has a step that cannot work where it is."""
    if not sends(steps):
        raise StepError(f"{where}: the workflow can never send (no send, escalate or digest step)")
    seen_send = False
    for i, step in enumerate(steps, start=1):
        why = _check(i, step, steps, seen_send)
        if why is not None:
            raise StepError(f"{where}: step {i} ({step.kind}): {why}")
        seen_send = seen_send or isinstance(step, Send)
