"""A workflow's send, escalate and digest steps make messages the way the classifier does.

They go through the classifier's own :func:`~consumers.classifier.decide.plan` and
:func:`~consumers.classifier.decide.finalize`, so a workflow step passes the same checks as a
first send (preferences and opt-ins, addresses, quiet hours, staleness) and gets the same
suppression and deferral outcomes. Pure.

Keys: the first send of a workflow uses the classifier's keys (event, channel, recipient);
any later step derives its own from them and the step number, so two steps on one channel are
two messages and a replay of either yields the same key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from consumers.classifier.decide import DecideConfig, Decision, Plan, finalize, plan
from consumers.classifier.profile import Profile
from consumers.classifier.routing import Route
from consumers.infra.keys import derived_key
from consumers.scheduler.store import Timer
from consumers.workflow.steps import SendMode
from schemas.models import Channel, DomainEvent

__all__ = ["StepSend", "send_step"]


@dataclass(slots=True)
class StepSend:
    decision: Decision = field(default_factory=Decision)
    sent: list[Channel] = field(default_factory=list)  # channels a message went (or was deferred) to

    @property
    def timers(self) -> list[Timer]:
        return self.decision.timers


def _plan(
    event: DomainEvent,
    route: Route,
    *,
    channels: tuple[Channel, ...],
    opt_in: tuple[Channel, ...],
    profile: Profile,
    now: datetime,
    cfg: DecideConfig,
) -> Plan:
    sub = dataclasses.replace(route, channels=channels, opt_in=opt_in)
    return plan(event, sub, profile, now, cfg)


def _pin(p: Plan, nid: str) -> None:
    """Give the plan the workflow's notification id. A workflow keeps the id it started with
    (its timers and state rows name it); a run started before ids named the tenant would
    otherwise send messages under another id than its own, and their receipts would end nothing."""
    if p.nid == nid:
        return
    p.nid = nid
    for item in p.pending:
        item.message.notification_id = nid
    p.suppressed = [dataclasses.replace(o, notification_id=nid) for o in p.suppressed]


def _rekey(p: Plan, step: int) -> None:
    for item in p.pending:
        item.message.idempotency_key = derived_key(item.message.idempotency_key, f"step:{step}")


def send_step(
    event: DomainEvent,
    route: Route,
    *,
    channels: tuple[Channel, ...],
    opt_in: tuple[Channel, ...] = (),
    mode: SendMode = SendMode.ALL,
    step: int,
    first_send: bool,
    profile: Profile,
    now: datetime,
    cfg: DecideConfig,
    nid: str | None = None,
) -> StepSend:
    """The records (messages, outcomes) and timers (quiet-hours deferrals) of one send step.

    ``mode=first``: the channels are tried in order and the first one with a message that
    can go (an address and consent) is used; the suppressions of those before it are recorded.
    ``nid``: the workflow's notification id, which every record carries whatever ``plan`` derives.
    """
    out = StepSend()
    groups = [(channels, opt_in)] if mode is SendMode.ALL else [((c,), ()) for c in channels]
    for chans, extra in groups:
        p = _plan(event, route, channels=chans, opt_in=extra, profile=profile, now=now, cfg=cfg)
        if nid is not None:
            _pin(p, nid)
        if not first_send:
            _rekey(p, step)
        d = finalize(p, [True] * len(p.pending), now, cfg)
        out.decision.outputs += d.outputs
        out.decision.timers += d.timers
        out.decision.counts += d.counts
        out.sent += [item.message.channel for item in p.pending]
        if mode is SendMode.FIRST and p.pending:
            break
    return out
