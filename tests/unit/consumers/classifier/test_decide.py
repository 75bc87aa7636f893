"""The pure per-event decision: every tier x preference combination, addresses, quiet hours,
staleness, rate-limit answers (including Redis down), lanes, keys and outcomes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.decide import DecideConfig, Decision, finalize, plan
from consumers.classifier.profile import Endpoint, Profile
from consumers.classifier.quiet_hours import QuietWindow
from consumers.classifier.ratelimit import bucket_key
from consumers.classifier.routing import Route, load_routing
from consumers.infra import keys
from consumers.infra.settings import ClassifierSettings
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    DomainEvent,
    Lane,
    OutcomeStatus,
    Tier,
    field_names,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TOPICS = Topics("h")
CODEC = default_codec()
CFG = DecideConfig(
    topics=TOPICS, codec=CODEC, limits={"high": 30, "medium": 20, "low": 3}, stale_after=timedelta(hours=24)
)
TABLE = load_routing(ClassifierSettings().routing_file)
TYPES = {
    Tier.CRITICAL: "security_alert",
    Tier.HIGH: "payment_receipt",
    Tier.MEDIUM: "comment_reply",
    Tier.LOW: "marketing.weekly",
    Tier.SYSTEM: "system.invoice.paid",
}


def event(event_type: str, user: str = "u1", age: timedelta = timedelta(0), **kw: Any) -> DomainEvent:
    fields: dict[str, Any] = {"payload": '{"x": 1}', **kw}
    return DomainEvent(
        event_id=f"e-{event_type}-{user}", type=event_type, occurred_at=NOW - age, user_id=user, **fields
    )


def full_profile(user: str = "u1", **kw: Any) -> Profile:
    base: dict[str, Any] = {
        "user_id": user,
        "known": True,
        "email": f"{user}@example.com",
        "phone": "+15551234567",
        "timezone": "UTC",
        "locale": "pt-BR",
        "endpoints": (Endpoint("ep-1"),),
    }
    base.update(kw)
    return Profile(**base)


def decide(
    ev: DomainEvent,
    profile: Profile,
    admitted: bool | None = True,
    cfg: DecideConfig = CFG,
    now: datetime = NOW,
) -> Decision:
    route = TABLE.match(ev.type)
    assert route is not None
    p = plan(ev, route, profile, now, cfg)
    return finalize(p, [admitted if item.limit else True for item in p.pending], now, cfg)


def messages(d: Decision) -> dict[Channel, tuple[str, ChannelMessage, bytes | None]]:
    out = {}
    for o in d.outputs:
        if o.topic != TOPICS.outcomes:
            m = CODEC.decode(o.value, ChannelMessage)
            out[m.channel] = (o.topic, m, o.key)
    return out


def outcomes(d: Decision) -> list[DeliveryOutcome]:
    return [CODEC.decode(o.value, DeliveryOutcome) for o in d.outputs if o.topic == TOPICS.outcomes]


# -- every tier x every preference combination for its channels ---------------------------------------


def _cases() -> list[tuple[Tier, dict[Channel, bool | None]]]:
    cases = []
    for tier, event_type in TYPES.items():
        route = TABLE.match(event_type)
        assert route is not None
        chans = [*route.channels, *route.opt_in]
        for combo in itertools.product([None, True, False], repeat=len(chans)):
            cases.append((tier, dict(zip(chans, combo, strict=True))))
    return cases


@pytest.mark.parametrize(
    ("tier", "prefs"),
    _cases(),
    ids=lambda v: str(v) if isinstance(v, Tier) else ",".join(f"{c.value}={p}" for c, p in v.items()),
)
def test_every_tier_and_preference_combination(tier: Tier, prefs: dict[Channel, bool | None]) -> None:
    route = TABLE.match(TYPES[tier])
    assert route is not None
    stored = {(route.category, c): p for c, p in prefs.items() if p is not None}
    d = decide(event(TYPES[tier]), full_profile(preferences=stored))
    sent = messages(d)
    suppressed = {o.channel: o.reason for o in outcomes(d)}
    for channel, pref in prefs.items():
        if channel in route.opt_in:
            expected = "sent" if pref is True else "absent"  # opt-in: only an explicit yes sends
        elif tier is Tier.CRITICAL:
            expected = "sent"  # opt-outs never hold critical
        else:
            expected = "suppressed" if pref is False else "sent"
        if expected == "sent":
            assert channel in sent and channel not in suppressed
        elif expected == "suppressed":
            assert suppressed[channel] == "opted_out" and channel not in sent
        else:
            assert channel not in sent and channel not in suppressed
    for topic, m, key in sent.values():
        lane = Lane.BULK if tier is Tier.LOW else Lane.PRIORITY
        assert topic == TOPICS.channel(m.channel, lane) and m.lane is lane and m.tier is tier
        assert key == (b"ep-1" if m.channel is Channel.WEBHOOK else b"u1")
    assert len(d.counts) == len(sent) + len(suppressed)


@pytest.mark.parametrize(
    ("channel", "profile_kw", "reason"),
    [
        (Channel.EMAIL, {"email": None}, "no_address"),
        (Channel.SMS, {"phone": None}, "no_address"),
        (Channel.WEBHOOK, {"endpoints": ()}, "no_endpoint"),
        (Channel.WEBHOOK, {"endpoints": (Endpoint("ep-x", ("billing.*",)),)}, "no_endpoint"),
    ],
)
def test_missing_address_is_a_suppressed_outcome(
    channel: Channel, profile_kw: dict[str, Any], reason: str
) -> None:
    tier = Tier.SYSTEM if channel is Channel.WEBHOOK else Tier.CRITICAL
    d = decide(event(TYPES[tier]), full_profile(**profile_kw))
    (o,) = [o for o in outcomes(d) if o.channel is channel]
    assert (o.status, o.reason, o.tier) == (OutcomeStatus.SUPPRESSED, reason, tier)
    assert o.notification_id == keys.notification_id(f"e-{TYPES[tier]}-u1", "u1")
    assert channel not in messages(d)


def test_unknown_user_still_gets_push_and_in_app() -> None:
    d = decide(event("security_alert"), Profile("u9"))
    assert set(messages(d)) == {Channel.PUSH}
    assert {o.channel: o.reason for o in outcomes(d)} == {
        Channel.SMS: "no_address",
        Channel.EMAIL: "no_address",
    }


def test_webhook_fans_out_to_every_matching_endpoint_keyed_by_endpoint() -> None:
    eps = (Endpoint("ep-a"), Endpoint("ep-b", ("system.invoice.*",)), Endpoint("ep-c", ("system.user.*",)))
    d = decide(event("system.invoice.paid"), full_profile(endpoints=eps))
    sent = [CODEC.decode(o.value, ChannelMessage) for o in d.outputs]
    assert sorted(m.recipient for m in sent) == ["ep-a", "ep-b"]
    assert sorted(o.key for o in d.outputs) == [b"ep-a", b"ep-b"]  # type: ignore[type-var]
    assert all(m.template == "" and m.payload == '{"x": 1}' for m in sent)


def test_message_fields_and_replays_are_identical() -> None:
    ev = event("payment_receipt", tenant="acme")
    d1, d2 = decide(ev, full_profile()), decide(ev, full_profile())
    assert d1.outputs == d2.outputs
    _, m, _ = messages(d1)[Channel.PUSH]
    assert m.recipient == "u1" and m.locale == "pt-BR" and m.tenant == "acme" and m.category == "payments"
    assert m.idempotency_key == keys.idempotency_key(ev.event_id, "push", "u1", "acme")
    assert m.payload == ev.payload and m.attempt == 1 and m.not_before is None and m.expires_at is None
    assert decide(event("payment_receipt", locale="en"), full_profile()).outputs != d1.outputs


def test_records_are_built_in_their_field_order() -> None:
    # decide.py builds these positionally (a hot path): reordering a dataclass must fail here first
    assert field_names(ChannelMessage) == (
        "notification_id", "event_id", "event_type", "user_id", "channel", "lane", "tier", "category",
        "recipient", "template", "locale", "idempotency_key", "occurred_at", "tenant", "timezone",
        "payload", "attempt", "not_before", "expires_at", "escalated_from",
    )  # fmt: skip
    assert field_names(DeliveryOutcome) == (
        "outcome_id", "notification_id", "event_id", "event_type", "user_id", "tier", "status",
        "occurred_at", "recorded_at", "channel", "lane", "reason", "detail", "provider",
        "provider_message_id", "error_code", "idempotency_key", "attempt", "retry_after_ms",
        "not_before", "message",
    )  # fmt: skip
    ev = event("marketing.weekly", tenant="acme", locale="pt")
    route = TABLE.match(ev.type)
    assert route is not None
    (item,) = plan(ev, route, full_profile(timezone="Asia/Tokyo"), NOW, CFG).pending
    assert item.message == ChannelMessage(
        notification_id=keys.notification_id(ev.event_id, ev.user_id, "acme"),
        event_id=ev.event_id,
        event_type=ev.type,
        user_id=ev.user_id,
        channel=Channel.EMAIL,
        lane=Lane.BULK,
        tier=Tier.LOW,
        category=route.category,
        recipient="u1@example.com",
        template=route.template,
        locale="pt",
        idempotency_key=keys.idempotency_key(ev.event_id, "email", "u1@example.com", "acme"),
        occurred_at=ev.occurred_at,
        tenant="acme",
        timezone="Asia/Tokyo",
        payload=ev.payload,
        expires_at=ev.occurred_at + CFG.stale_after,
    )
    (refused,) = plan(ev, route, full_profile(email=None), NOW, CFG).suppressed
    key = keys.idempotency_key(ev.event_id, "email", "", "acme")
    assert refused == DeliveryOutcome(
        outcome_id=keys.outcome_id(key, OutcomeStatus.SUPPRESSED),
        notification_id=keys.notification_id(ev.event_id, ev.user_id, "acme"),
        event_id=ev.event_id,
        event_type=ev.type,
        user_id=ev.user_id,
        tier=Tier.LOW,
        status=OutcomeStatus.SUPPRESSED,
        occurred_at=ev.occurred_at,
        recorded_at=NOW,
        channel=Channel.EMAIL,
        lane=Lane.BULK,
        reason="no_address",
        detail="no email address on file",
        idempotency_key=key,
    )


def test_locale_falls_back_to_the_default() -> None:
    d = decide(event("payment_receipt"), full_profile(locale=None))
    assert messages(d)[Channel.PUSH][1].locale == "en"


# -- quiet hours, staleness ---------------------------------------------------------------------------

QUIET = QuietWindow(time(11), time(13))  # NOW (12:00 UTC) is inside in UTC


@pytest.mark.parametrize("tier", list(Tier))
def test_quiet_hours_defer_interruptive_channels(tier: Tier) -> None:
    d = decide(event(TYPES[tier]), full_profile(quiet=QUIET, preferences={("activity", Channel.PUSH): True}))
    release = datetime(2025, 6, 1, 13, tzinfo=UTC)
    deferred = {o.channel: o for o in outcomes(d) if o.status is OutcomeStatus.DEFERRED}
    sent = messages(d)
    if tier in (Tier.CRITICAL, Tier.SYSTEM):
        assert not deferred and not d.timers
        return
    held = {Channel.PUSH} if tier in (Tier.HIGH, Tier.MEDIUM) else {Channel.EMAIL}
    assert set(deferred) == held
    assert set(sent) == ({Channel.IN_APP} if tier is Tier.MEDIUM else set())  # the inbox never buzzes
    for channel, o in deferred.items():
        assert o.reason == "quiet_hours" and o.not_before == release
        assert o.message is not None and o.message.not_before == release
        (timer,) = [t for t in d.timers if t.key == o.message.idempotency_key + ":deferred"]
        assert timer.kind == "deferred_send" and timer.due_at == release
        # medium push is opt-in (routing.yaml): at release it needs the stored yes again; the
        # tenant: keyed by the user, it is erased by (tenant, user)
        assert timer.data == ({"tenant": "", "opt_in": True} if tier is Tier.MEDIUM else {"tenant": ""})
        assert channel is not None and timer.topic == TOPICS.channel(
            channel, Lane.BULK if tier is Tier.LOW else Lane.PRIORITY
        )
        assert timer.msg_key == b"u1" and timer.payload is not None
        assert CODEC.decode(timer.payload, ChannelMessage) == o.message


def test_in_a_different_zone_the_same_instant_is_not_quiet() -> None:
    d = decide(event("payment_receipt"), full_profile(quiet=QUIET, timezone="Asia/Kathmandu"))
    assert Channel.PUSH in messages(d) and not d.timers


@pytest.mark.parametrize(
    ("age", "quiet", "expected"),
    [
        (timedelta(hours=1), None, "sent"),
        (timedelta(hours=30), None, "stale"),
        (timedelta(hours=23, minutes=30), QUIET, "stale"),  # released at 13:00, 24.5h old by then
        (timedelta(hours=1), QUIET, "deferred"),
    ],
)
def test_low_tier_staleness(age: timedelta, quiet: QuietWindow | None, expected: str) -> None:
    d = decide(event("marketing.weekly", age=age), full_profile(quiet=quiet))
    if expected == "sent":
        (_, m, _) = messages(d)[Channel.EMAIL]
        assert m.expires_at == NOW - age + timedelta(hours=24)
    else:
        (o,) = outcomes(d)
        assert o.reason == ("stale" if expected == "stale" else "quiet_hours")
        assert not messages(d)


# -- rate limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", list(Tier))
def test_rate_limited_messages_become_outcomes(tier: Tier) -> None:
    route = TABLE.match(TYPES[tier])
    assert route is not None
    d = decide(event(TYPES[tier]), full_profile(), admitted=False)
    if tier in (Tier.CRITICAL, Tier.SYSTEM):  # critical exempt; system unlimited by default
        assert not outcomes(d) and messages(d)
        return
    assert {o.reason for o in outcomes(d)} == {"rate_limited"} and not messages(d)


def test_limit_requests_are_per_user_channel_hour() -> None:
    route = TABLE.match("security_alert")
    assert route is not None
    assert all(
        i.limit is None for i in plan(event("security_alert"), route, full_profile(), NOW, CFG).pending
    )
    route = TABLE.match("marketing.weekly")
    assert route is not None
    (item,) = plan(event("marketing.weekly"), route, full_profile(), NOW, CFG).pending
    assert item.limit is not None and item.limit.limit == 3
    assert item.limit.member == item.message.idempotency_key and ":u1:email:" in item.limit.bucket


@given(st.text(min_size=1, max_size=20), st.sampled_from([None, "acme", "a b/c"]), st.integers(0, 10**6))
def test_limit_buckets_are_bucket_key(user: str, tenant: str | None, minutes: int) -> None:
    # plan() builds the key from a per-event scope and a per-batch hour: still bucket_key's answer
    now = NOW + timedelta(minutes=minutes)
    route = TABLE.match("marketing.weekly")
    assert route is not None
    e = event("marketing.weekly", user=user, tenant=tenant)
    for item in plan(e, route, full_profile(user), now, CFG).pending:
        assert item.limit is not None
        expected = bucket_key(CFG.rate_prefix, user, item.message.channel, now, tenant or "")
        assert item.limit.bucket == expected


@pytest.mark.parametrize("tier", [Tier.HIGH, Tier.MEDIUM, Tier.LOW])
def test_redis_down(tier: Tier) -> None:
    d = decide(event(TYPES[tier]), full_profile(), admitted=None)
    if tier is not Tier.LOW:  # fail open: sent, counted as such
        assert messages(d) and not d.timers
        assert all(reason == "rate_limiter_unavailable" for _, _, reason in d.counts)
        return
    assert not messages(d)
    (o,) = outcomes(d)
    assert (o.status, o.reason) == (OutcomeStatus.DEFERRED, "rate_limiter_unavailable")
    (timer,) = d.timers
    assert timer.topic == TOPICS.events and timer.msg_key == b"u1" and timer.due_at == o.not_before
    assert timer.payload is not None and CODEC.decode(timer.payload, DomainEvent) == event(TYPES[tier])
    assert NOW < timer.due_at <= NOW + CFG.limiter_retry
    assert timer.data == {"tenant": ""}  # keyed by the user: erasure goes by (tenant, user)
    acme = decide(event(TYPES[tier], tenant="acme"), full_profile(), admitted=None)
    assert acme.timers[0].data == {"tenant": "acme"}
    again = decide(event(TYPES[tier]), full_profile(), admitted=None, now=NOW + timedelta(seconds=1))
    assert again.timers[0].key == timer.key  # a replay in the same slot arms nothing new
    later = decide(event(TYPES[tier]), full_profile(), admitted=None, now=timer.due_at)
    assert later.timers[0].key != timer.key  # the retry can defer again


def test_route_lane_property() -> None:
    r = Route("x", Tier.LOW, "c", (Channel.EMAIL,), "t")
    assert r.lane is Lane.BULK


@pytest.mark.parametrize("switch", [True, False])
def test_a_workflow_digest_honours_the_digest_switch(switch: bool) -> None:
    """A workflow's digest step sends through plan(): the digest switch is checked there too."""
    route = Route("comments", Tier.MEDIUM, "activity", (Channel.EMAIL,), "digest")
    profile = full_profile(digest=switch)
    for event_type, allowed in (("digest", switch), ("comment_reply", True)):
        p = plan(event(event_type), route, profile, NOW, CFG)
        assert [i.message.channel for i in p.pending] == ([Channel.EMAIL] if allowed else [])
        assert [o.reason for o in p.suppressed] == ([] if allowed else ["opted_out"])
