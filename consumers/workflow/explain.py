"""A workflow as a one-line timeline: ``t+0 push; t+5m if undelivered → email``. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.workflow.steps import Delay, Digest, Escalate, Overflow, Send, SendMode, Step, Throttle, Wait

__all__ = ["fmt_duration", "timeline"]

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def fmt_duration(seconds: float) -> str:
    """``300`` → ``5m``, ``5400`` → ``1h30m``, ``0.5`` → ``0.5s``: the routing file's own spelling."""
    if seconds <= 0:
        return "0"
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in _UNITS:
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def _send(step: Send) -> str:
    joiner = " or " if step.mode is SendMode.FIRST else "+"
    text = joiner.join(c.value for c in step.channels)
    if step.mode is SendMode.FIRST and len(step.channels) > 1:
        text = f"first of {text}"
    if step.opt_in:
        text += f" (+{'+'.join(c.value for c in step.opt_in)} if opted in)"
    return text


def _throttle(step: Throttle) -> str:
    rest = "dropped" if step.overflow is Overflow.DROP else "to the digest"
    return f"at most {step.limit} per user per {fmt_duration(step.per_s)}, the rest {rest}"


def timeline(steps: Sequence[Step]) -> str:
    """What happens when, from the moment the event is classified (t+0)."""
    at = 0.0
    condition = ""  # set by a "wait until": the next step runs only if the receipt did not come
    parts: list[str] = []
    for step in steps:
        when = f"t+{fmt_duration(at)}"
        if isinstance(step, Throttle):
            parts.append(_throttle(step))
        elif isinstance(step, Delay | Wait):
            at += step.duration_s if isinstance(step, Delay) else step.bound_s
            if isinstance(step, Wait) and step.until is not None:
                condition = f"un{step.until.value}"
        elif isinstance(step, Send):
            parts.append(f"{when} {_send(step)}")
        elif isinstance(step, Escalate):
            parts.append(
                f"{when} if {condition or 'undelivered'} → {'+'.join(c.value for c in step.channels)}"
            )
        elif isinstance(step, Digest):
            prefix = f"{when} if {condition} → " if condition else f"{when} "
            parts.append(
                f"{prefix}{step.channel.value} digest (one per {fmt_duration(step.window_s)}, "
                f"sent {fmt_duration(step.send_after_s)} after its first item, max {step.max_items} items)"
            )
    return "; ".join(parts)
