"""Tier presets: what a route that names only a tier does, spelled as workflow steps.

The decision table, one preset per tier (the delays are the fallback settings' defaults, so
``herald routes explain`` prints what runs):

* critical: push + SMS + email at once.
* high: push; email if the push is not confirmed within 5 min (when the route's fallback is email).
* medium: in-app (push where the user opted in); unread after 24 h → the email digest.
* low: email on the bulk lane.
* system: the signed webhook (retries with backoff are the webhook channel's retry schedule).

A preset route keeps its channels, opt-ins and fallback from the routing file; the steps only
describe them. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumers.workflow.steps import Digest, Escalate, Send, Step, Wait, WaitFor
from schemas.models import Channel, Tier

__all__ = ["PresetTimings", "preset_steps"]


@dataclass(frozen=True, slots=True)
class PresetTimings:
    """The fallback settings the presets depend on (``HERALD_FALLBACK__*``)."""

    high_escalation_delay_s: float = 300.0
    digest_after_s: float = 86_400.0
    digest_window_s: float = 86_400.0
    digest_collect_s: float = 60.0
    digest_max_items: int = 10


def preset_steps(
    tier: Tier,
    channels: tuple[Channel, ...],
    opt_in: tuple[Channel, ...] = (),
    fallback: tuple[Channel, ...] = (),
    timings: PresetTimings | None = None,
) -> tuple[Step, ...]:
    """The steps a route of ``tier`` with these channels runs today."""
    t = timings or PresetTimings()
    first = Send(channels, opt_in=opt_in)
    if tier is Tier.HIGH and fallback:
        return (
            first,
            Wait(until=WaitFor.DELIVERED, timeout_s=t.high_escalation_delay_s),
            Escalate(fallback),
        )
    if tier is Tier.MEDIUM and fallback:
        digest = Digest(
            channel=fallback[0],
            window_s=t.digest_window_s,
            send_after_s=t.digest_collect_s,
            max_items=t.digest_max_items,
        )
        return (first, Wait(until=WaitFor.READ, timeout_s=t.digest_after_s), digest)
    return (first,)
