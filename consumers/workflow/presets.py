"""Tier presets: what a route that names only a tier does, spelled as workflow steps.

The decision table, one preset per tier (the delays are the fallback settings' defaults, so
``herald routes explain`` prints what runs):

* critical: push + SMS + email at once.
* high: push; email if the push is not confirmed within 5 min (when the route's fallback is email).
* medium: in-app (push where the user opted in); unread after 24 h → the email digest.
* low: email on the bulk lane.
* system: the signed webhook (retries with backoff are the webhook channel's retry schedule).

A preset route keeps its channels, opt-ins and fallback from the routing file. Its first send is
made by the classifier at once (no timer in the way of a push); what follows a send runs on the
workflow executor, entered from that send's outcome: :func:`escalation_after` reads from the
steps when and to what a send escalates (the high preset's wait and escalate), and
:func:`digest_after` when an unread item joins the digest (the medium preset's). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consumers.infra.settings import FallbackSettings
from consumers.workflow.steps import Digest, Escalate, Send, Step, Wait, WaitFor
from schemas.models import Channel, Tier

__all__ = ["AfterSend", "PresetTimings", "digest_after", "escalation_after", "preset_steps", "timings_of"]


@dataclass(frozen=True, slots=True)
class PresetTimings:
    """The fallback settings the presets depend on (``HERALD_FALLBACK__*``)."""

    high_escalation_delay_s: float = 300.0
    digest_after_s: float = 86_400.0
    digest_window_s: float = 86_400.0
    digest_collect_s: float = 60.0
    digest_max_items: int = 10


def timings_of(f: FallbackSettings) -> PresetTimings:
    """The presets' delays from the fallback settings (``HERALD_FALLBACK__*``)."""
    return PresetTimings(
        high_escalation_delay_s=f.high_escalation_delay_s,
        digest_after_s=f.digest_after_s,
        digest_window_s=f.digest_window_s,
        digest_collect_s=f.digest_collect_s,
        digest_max_items=f.digest_max_items,
    )


@dataclass(frozen=True, slots=True)
class AfterSend:
    """What follows a workflow's first send on a channel: wait for a receipt, then escalate."""

    step: int  # the escalate step's index: the executor's state row stands there while it waits
    wait_s: float
    channels: tuple[Channel, ...]


def escalation_after(steps: Sequence[Step], channel: Channel) -> AfterSend | None:
    """``send`` (including ``channel``), ``wait until delivered``, ``escalate``: the escalation a
    message on ``channel`` starts when it is sent (or fails); None when the workflow has none."""
    if len(steps) < 3 or channel is not Channel.PUSH:
        # The preset watches its push: the first-send channel the apps confirm with receipts and
        # whose failure (no device, unregistered) is known at once. Another channel of the same
        # send (a route's [push, sms]) neither starts nor hurries the escalation.
        return None
    send, wait, escalate = steps[0], steps[1], steps[2]
    if not (isinstance(send, Send) and channel in send.channels + send.opt_in):
        return None
    if not (isinstance(wait, Wait) and wait.until is WaitFor.DELIVERED and isinstance(escalate, Escalate)):
        return None
    if channel in escalate.channels:
        return None  # a message escalated to that channel does not escalate again
    return AfterSend(step=2, wait_s=wait.bound_s, channels=escalate.channels)


def digest_after(steps: Sequence[Step], channel: Channel) -> AfterSend | None:
    """``send`` (including ``channel``), ``wait until read``, ``digest``: the digest an item sent on
    ``channel`` joins if still unread at the wait's end; None when the workflow has none."""
    if len(steps) != 3 or channel is not Channel.IN_APP:
        return None  # the digest collects unread inbox items: "read" is the inbox row's state
    send, wait, digest = steps
    if not (isinstance(send, Send) and channel in send.channels):
        return None
    if not (isinstance(wait, Wait) and wait.until is WaitFor.READ and isinstance(digest, Digest)):
        return None
    return AfterSend(step=2, wait_s=wait.bound_s, channels=(digest.channel,))


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
