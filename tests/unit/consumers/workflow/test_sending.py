"""A workflow step's send: the records carry the workflow's notification id, whatever the
classifier's plan derives (a run started before ids named the tenant keeps its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consumers.classifier.decide import DecideConfig
from consumers.classifier.profile import Profile
from consumers.classifier.routing import Route
from consumers.infra.keys import notification_id
from consumers.runtime.topics import Topics
from consumers.workflow.sending import send_step
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent, Tier

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TOPICS = Topics("h")
CODEC = default_codec()
CFG = DecideConfig(topics=TOPICS, codec=CODEC, limits={}, stale_after=timedelta(hours=24))
ROUTE = Route("wf.x", Tier.HIGH, "c", (Channel.PUSH, Channel.EMAIL, Channel.SMS), "t")
EVENT = DomainEvent(event_id="e1", type="wf.x", occurred_at=NOW, user_id="u1", tenant="acme")
# email and push go; sms is suppressed (no phone)
PROFILE = Profile("u1", known=True, email="u1@example.com", tenant="acme")


def _ids(nid: str | None, step: int) -> set[tuple[str, bytes | None]]:
    sent = send_step(
        EVENT,
        ROUTE,
        channels=ROUTE.channels,
        step=step,
        first_send=step == 1,
        profile=PROFILE,
        now=NOW,
        cfg=CFG,
        nid=nid,
    )
    ids = set()
    for o in sent.decision.outputs:
        if o.topic == TOPICS.outcomes:
            outcome = CODEC.decode(o.value, DeliveryOutcome)
            ids.add((outcome.notification_id, o.key))
            if outcome.message is not None:
                ids.add((outcome.message.notification_id, o.key))
        else:
            ids.add((CODEC.decode(o.value, ChannelMessage).notification_id, None))
    return ids


def test_a_step_sends_under_the_workflows_notification_id() -> None:
    old = notification_id("e1", "u1")  # the id of a run started before ids named the tenant
    assert old != notification_id("e1", "u1", "acme")
    for step in (1, 3):
        assert _ids(old, step) == {(old, None), (old, old.encode())}


def test_without_a_pinned_id_the_plans_id_is_used() -> None:
    new = notification_id("e1", "u1", "acme")
    assert _ids(None, 1) == {(new, None), (new, new.encode())}
