"""The fallback consumer's pure decisions, as tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.routing import DEFAULT_CHANNELS, DEFAULT_FALLBACK
from consumers.fallback.decisions import (
    RECEIPT_SOURCE_API,
    Action,
    DigestItem,
    decide_outcome,
    digest_content,
    digest_key,
    digest_message,
    digest_send_at,
    digest_window,
    escalates_on_exhaustion,
    escalation_email,
    escalation_email_key,
    escalation_timer_key,
    fallback_outcome,
    push_failure_reason,
    receipt_cancels,
    receipt_is_foreign,
    watches_critical,
)
from consumers.infra.keys import derived_key
from consumers.workflow.presets import preset_steps
from consumers.workflow.steps import Step
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, ReceiptStatus, Tier

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def _msg(channel: Channel = Channel.PUSH, tier: Tier = Tier.HIGH, **kw: object) -> ChannelMessage:
    base: dict[str, object] = dict(
        notification_id="n1",
        event_id="e1",
        event_type="payment_receipt",
        user_id="u1",
        channel=channel,
        lane=Lane.PRIORITY,
        tier=tier,
        category="payments",
        recipient="u1",
        template="payment_receipt",
        locale="en",
        idempotency_key="msg_push",
        occurred_at=T0,
    )
    base.update(kw)
    return ChannelMessage(**base)  # type: ignore[arg-type]


def _preset(tier: Tier, fallback: tuple[Channel, ...] | None = None) -> tuple[Step, ...]:
    """The tier's preset steps, with the decision table's channels and fallback."""
    chosen = DEFAULT_FALLBACK.get(tier, ()) if fallback is None else fallback
    return preset_steps(tier, DEFAULT_CHANNELS[tier], fallback=chosen)


def _outcome(status: OutcomeStatus, message: ChannelMessage | None, **kw: object) -> DeliveryOutcome:
    m = message or _msg()
    base: dict[str, object] = dict(
        outcome_id="o1",
        notification_id=m.notification_id,
        event_id=m.event_id,
        event_type=m.event_type,
        user_id=m.user_id,
        tier=m.tier,
        status=status,
        occurred_at=T0,
        recorded_at=T0,
        channel=m.channel,
        message=message,
    )
    base.update(kw)
    return DeliveryOutcome(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("channel", "tier", "status", "escalated_from", "expected"),
    [
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.SENT, None, Action.ARM_ESCALATION),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.FAILED_PERMANENT, None, Action.ESCALATE_NOW),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.FAILED_RETRYABLE, None, Action.RETRY),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.SENT, "msg_x", Action.IGNORE),  # already an escalation
        (
            Channel.PUSH,
            Tier.HIGH,
            OutcomeStatus.ESCALATED,
            None,
            Action.IGNORE,
        ),  # our own output, looping back
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.EXHAUSTED, None, Action.IGNORE),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.SUPPRESSED, None, Action.IGNORE),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.DEFERRED, None, Action.IGNORE),
        (Channel.PUSH, Tier.MEDIUM, OutcomeStatus.SENT, None, Action.IGNORE),  # opted-in medium push
        (Channel.PUSH, Tier.CRITICAL, OutcomeStatus.FAILED_PERMANENT, None, Action.IGNORE),  # all sent anyway
        (Channel.EMAIL, Tier.HIGH, OutcomeStatus.SENT, "msg_push", Action.IGNORE),
        (Channel.EMAIL, Tier.HIGH, OutcomeStatus.FAILED_RETRYABLE, "msg_push", Action.RETRY),
        (Channel.IN_APP, Tier.MEDIUM, OutcomeStatus.SENT, None, Action.ARM_DIGEST_ITEM),
        (Channel.IN_APP, Tier.MEDIUM, OutcomeStatus.FAILED_PERMANENT, None, Action.IGNORE),
        (Channel.IN_APP, Tier.MEDIUM, OutcomeStatus.FAILED_RETRYABLE, None, Action.RETRY),
        (Channel.IN_APP, Tier.HIGH, OutcomeStatus.SENT, None, Action.IGNORE),
        (Channel.WEBHOOK, Tier.SYSTEM, OutcomeStatus.FAILED_RETRYABLE, None, Action.RETRY),
        (Channel.WEBHOOK, Tier.SYSTEM, OutcomeStatus.SENT, None, Action.IGNORE),
        (Channel.EMAIL, Tier.LOW, OutcomeStatus.FAILED_RETRYABLE, None, Action.RETRY),
        (Channel.SMS, Tier.CRITICAL, OutcomeStatus.FAILED_RETRYABLE, None, Action.RETRY),
    ],
)
def test_decide_outcome(
    channel: Channel, tier: Tier, status: OutcomeStatus, escalated_from: str | None, expected: Action
) -> None:
    message = _msg(channel, tier, escalated_from=escalated_from)
    assert decide_outcome(_outcome(status, message), _preset(tier)) == [expected]


def test_outcome_without_message_is_ignored() -> None:
    assert decide_outcome(_outcome(OutcomeStatus.FAILED_RETRYABLE, None)) == [Action.IGNORE]


@pytest.mark.parametrize(("status", "cancels"), [(s, True) for s in ReceiptStatus])
def test_every_receipt_cancels(status: ReceiptStatus, cancels: bool) -> None:
    assert receipt_cancels(status) is cancels


@pytest.mark.parametrize(
    ("reason", "code", "expected"),
    [
        ("no_device", None, "push_failed:no_device"),
        (None, "UNREGISTERED", "push_failed:unregistered"),
        ("payload_too_large", "INVALID_ARGUMENT", "push_failed:payload_too_large"),
        (None, None, "push_failed:unknown"),
    ],
)
def test_push_failure_reason(reason: str | None, code: str | None, expected: str) -> None:
    out = _outcome(OutcomeStatus.FAILED_PERMANENT, _msg(), reason=reason, error_code=code)
    assert push_failure_reason(out) == expected


def test_escalation_email_keeps_the_notification_and_derives_its_key() -> None:
    push = _msg(attempt=3, not_before=T0, payload='{"amount": "1"}')
    email = escalation_email(push, "a@example.com")
    assert email.channel == Channel.EMAIL and email.lane == Lane.PRIORITY
    assert email.recipient == "a@example.com"
    assert email.notification_id == push.notification_id and email.template == push.template
    assert email.payload == push.payload
    assert (
        email.idempotency_key == derived_key("msg_push", "escalate:email") == escalation_email_key("msg_push")
    )
    assert email.escalated_from == "msg_push" and email.attempt == 1 and email.not_before is None
    assert escalation_email(push, "a@example.com") == email  # deterministic: replays match


def test_timeout_and_failure_timers_have_distinct_keys() -> None:
    assert escalation_timer_key("k") == derived_key("k", "escalate")
    assert escalation_timer_key("k", immediate=True) != escalation_timer_key("k")


@pytest.mark.parametrize(
    ("channel", "tier", "escalated_from", "expected"),
    [
        (Channel.PUSH, Tier.HIGH, None, True),
        (Channel.PUSH, Tier.MEDIUM, None, False),
        (Channel.EMAIL, Tier.HIGH, "k", False),
        (Channel.PUSH, Tier.HIGH, "k", False),
        (Channel.WEBHOOK, Tier.SYSTEM, None, False),
    ],
)
def test_escalates_on_exhaustion(
    channel: Channel, tier: Tier, escalated_from: str | None, expected: bool
) -> None:
    message = _msg(channel, tier, escalated_from=escalated_from)
    assert escalates_on_exhaustion(message, _preset(tier)) is expected


@pytest.mark.parametrize(
    ("tier", "status", "channel", "expected"),
    [
        (Tier.CRITICAL, OutcomeStatus.SENT, Channel.SMS, True),
        (Tier.CRITICAL, OutcomeStatus.FAILED_PERMANENT, Channel.PUSH, True),
        (Tier.CRITICAL, OutcomeStatus.ESCALATED, Channel.EMAIL, False),
        (Tier.CRITICAL, OutcomeStatus.SENT, None, False),
        (Tier.HIGH, OutcomeStatus.SENT, Channel.PUSH, False),
    ],
)
def test_watches_critical(tier: Tier, status: OutcomeStatus, channel: Channel | None, expected: bool) -> None:
    out = _outcome(status, _msg(tier=tier), tier=tier, channel=channel)
    assert watches_critical(out) is expected


# -- digest ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("at", "window_s", "expected"),
    [
        (T0, DAY, datetime(2026, 3, 10, tzinfo=UTC)),
        (datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=UTC), DAY, datetime(2026, 3, 10, tzinfo=UTC)),
        (datetime(2026, 3, 11, tzinfo=UTC), DAY, datetime(2026, 3, 11, tzinfo=UTC)),
        (datetime(2026, 3, 10, 12, 7, tzinfo=UTC), 600.0, datetime(2026, 3, 10, 12, 0, tzinfo=UTC)),
    ],
)
def test_digest_window(at: datetime, window_s: float, expected: datetime) -> None:
    assert digest_window(at, window_s) == expected


def test_digest_window_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        digest_window(T0, 0)


MIDNIGHT = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "quiet", "window", "send_at"),
    [
        ([], None, MIDNIGHT, T0 + timedelta(seconds=60)),
        # this window's digest went out already: next window, not before it starts
        ([MIDNIGHT], None, MIDNIGHT + timedelta(days=1), MIDNIGHT + timedelta(days=1)),
        (
            [MIDNIGHT, MIDNIGHT + timedelta(days=1)],
            None,
            MIDNIGHT + timedelta(days=2),
            MIDNIGHT + timedelta(days=2),
        ),
        # quiet hours push the send past their end, in the same window
        ([], T0 + timedelta(hours=3), MIDNIGHT, T0 + timedelta(hours=3)),
        # quiet hours ending before the planned send change nothing
        ([], T0 + timedelta(seconds=30), MIDNIGHT, T0 + timedelta(seconds=60)),
        # unrelated sent windows do not matter
        ([MIDNIGHT - timedelta(days=1)], None, MIDNIGHT, T0 + timedelta(seconds=60)),
    ],
)
def test_digest_send_at(
    sent: list[datetime], quiet: datetime | None, window: datetime, send_at: datetime
) -> None:
    plan = digest_send_at(T0, window_s=DAY, collect_s=60, sent_windows=sent, quiet_until=quiet)
    assert (plan.window_start, plan.send_at) == (window, send_at)


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=2))
def test_digest_plan_never_reuses_a_sent_window(offset_s: int, n_sent: int) -> None:
    at = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=offset_s)
    first = digest_window(at, DAY)
    sent = [first + timedelta(days=i) for i in range(n_sent)]
    plan = digest_send_at(at, window_s=DAY, collect_s=5, sent_windows=sent)
    assert plan.window_start not in sent
    assert plan.window_start <= plan.send_at < plan.window_start + timedelta(days=1) + timedelta(seconds=5)
    assert plan.send_at >= at


def _items(n: int) -> list[DigestItem]:
    return [DigestItem(f"t{i}", f"b{i}", T0 + timedelta(minutes=i)) for i in range(n)]


@pytest.mark.parametrize(
    ("n", "cap", "shown", "more"),
    [(0, 10, 0, 0), (3, 10, 3, 0), (10, 10, 10, 0), (13, 10, 10, 3), (5, 0, 0, 5)],
)
def test_digest_content_caps_with_and_n_more(n: int, cap: int, shown: int, more: int) -> None:
    content = digest_content(_items(n), cap)
    assert len(content["items"]) == shown and content["more"] == more
    if shown:
        assert content["items"][0]["title"] == f"t{n - 1}"  # newest first
        assert content["items"][0]["created_at"] == (T0 + timedelta(minutes=n - 1)).isoformat()
    json.dumps(content)  # template variables must be JSON (ChannelMessage.payload)


def test_digest_message_is_deterministic_per_user_and_window() -> None:
    kw: dict[str, object] = dict(
        user_id="u1",
        email="a@x.org",
        window_start=MIDNIGHT,
        content={"items": [], "more": 0},
        locale="pt",
        timezone="America/Sao_Paulo",
    )
    a = digest_message(now=T0, **kw)  # type: ignore[arg-type]
    b = digest_message(now=T0 + timedelta(hours=1), **kw)  # type: ignore[arg-type]
    assert a.idempotency_key == b.idempotency_key == digest_key("u1", MIDNIGHT)
    assert a.notification_id == b.notification_id
    assert digest_key("u1", MIDNIGHT + timedelta(days=1)) != a.idempotency_key
    assert digest_key("u2", MIDNIGHT) != a.idempotency_key
    assert (a.channel, a.template, a.tier, a.lane, a.recipient, a.locale) == (
        Channel.EMAIL,
        "digest",
        Tier.MEDIUM,
        Lane.PRIORITY,
        "a@x.org",
        "pt",
    )


def test_the_default_tenants_digest_key_is_the_one_from_before_tenants() -> None:
    # Digests already sent keep their keys across the upgrade: the default tenant's key is unchanged.
    before = derived_key(f"u1\x1f{MIDNIGHT.isoformat()}", "digest")
    assert digest_key("u1", MIDNIGHT) == digest_key("u1", MIDNIGHT, "") == before


@given(
    tenant=st.text(min_size=1, max_size=8),
    user=st.text(min_size=1, max_size=8),
    other=st.text(max_size=8),
)
def test_a_tenants_digest_key_is_its_own(tenant: str, user: str, other: str) -> None:
    key = digest_key(user, MIDNIGHT, tenant)
    assert key == digest_key(user, MIDNIGHT, tenant)  # stable
    assert key != digest_key(user, MIDNIGHT)  # not the default tenant's digest of the same id
    if other != tenant:
        assert key != digest_key(user, MIDNIGHT, other)
    # No user id makes one tenant's key another's (the tenant is not just a prefix of the id).
    assert key != digest_key(f"{tenant}\x1f{user}", MIDNIGHT)
    assert key != digest_key(user, MIDNIGHT + timedelta(days=1), tenant)


def test_a_tenants_digest_message_carries_the_tenant_and_its_own_ids() -> None:
    kw: dict[str, object] = dict(
        user_id="u1",
        email="u1@acme.example",
        window_start=MIDNIGHT,
        content={"items": [], "more": 0},
        locale="en",
        timezone="UTC",
        now=T0,
    )
    default = digest_message(**kw)  # type: ignore[arg-type]
    acme = digest_message(tenant="acme", **kw)  # type: ignore[arg-type]
    assert (default.tenant, acme.tenant) == (None, "acme")
    assert acme.idempotency_key == digest_key("u1", MIDNIGHT, "acme") != default.idempotency_key
    assert acme.notification_id != default.notification_id and acme.event_id != default.event_id


def test_fallback_outcome_ids_are_replay_stable_and_distinct_per_status() -> None:
    m = _msg()
    a = fallback_outcome(m, OutcomeStatus.ESCALATED, now=T0, reason="push_timeout")
    b = fallback_outcome(m, OutcomeStatus.ESCALATED, now=T0 + timedelta(seconds=5), reason="push_timeout")
    c = fallback_outcome(m, OutcomeStatus.EXHAUSTED, now=T0)
    assert a.outcome_id == b.outcome_id != c.outcome_id
    assert (a.notification_id, a.status, a.reason, a.message) == (
        "n1",
        OutcomeStatus.ESCALATED,
        "push_timeout",
        m,
    )


@pytest.mark.parametrize(
    ("channel", "tier", "status", "with_email", "without"),
    [
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.SENT, Action.ARM_ESCALATION, Action.IGNORE),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.FAILED_PERMANENT, Action.ESCALATE_NOW, Action.IGNORE),
        (Channel.IN_APP, Tier.MEDIUM, OutcomeStatus.SENT, Action.ARM_DIGEST_ITEM, Action.IGNORE),
        (Channel.PUSH, Tier.HIGH, OutcomeStatus.FAILED_RETRYABLE, Action.RETRY, Action.RETRY),  # retries stay
    ],
)
def test_the_routes_fallback_key_turns_escalation_and_digest_on_and_off(
    channel: Channel, tier: Tier, status: OutcomeStatus, with_email: Action, without: Action
) -> None:
    outcome = _outcome(status, _msg(channel, tier))
    assert decide_outcome(outcome, _preset(tier)) == [with_email]
    assert decide_outcome(outcome, _preset(tier, fallback=())) == [without]


def test_a_high_route_sending_push_and_sms_escalates_from_the_push_only() -> None:
    steps = preset_steps(Tier.HIGH, (Channel.PUSH, Channel.SMS), fallback=(Channel.EMAIL,))
    sms = _msg(Channel.SMS, Tier.HIGH)
    assert decide_outcome(_outcome(OutcomeStatus.FAILED_PERMANENT, sms), steps) == [Action.IGNORE]
    assert decide_outcome(_outcome(OutcomeStatus.SENT, sms), steps) == [Action.IGNORE]
    push = _msg(Channel.PUSH, Tier.HIGH)
    assert decide_outcome(_outcome(OutcomeStatus.FAILED_PERMANENT, push), steps) == [Action.ESCALATE_NOW]


def test_only_an_api_receipt_of_another_user_than_the_notifications_is_foreign() -> None:
    assert receipt_is_foreign(RECEIPT_SOURCE_API, "mallory", "alice")
    assert not receipt_is_foreign(RECEIPT_SOURCE_API, "alice", "alice")
    assert not receipt_is_foreign(RECEIPT_SOURCE_API, "mallory", None)  # not known yet: checked at sent
    for trusted in ("app", "inbox", "cli"):  # Herald's own sources, not an end user's token
        assert not receipt_is_foreign(trusted, "mallory", "alice")
        assert not receipt_is_foreign(trusted, "alice", "alice", tenant="globex", owner_tenant="acme")


def test_an_api_receipt_of_the_same_user_id_in_another_tenant_is_foreign() -> None:
    api = RECEIPT_SOURCE_API
    assert receipt_is_foreign(api, "bob", "bob", tenant="globex", owner_tenant="acme")
    assert receipt_is_foreign(api, "bob", "bob", tenant="", owner_tenant="acme")  # "" is the default tenant
    assert not receipt_is_foreign(api, "bob", "bob", tenant="acme", owner_tenant="acme")
    assert not receipt_is_foreign(api, "bob", "bob", tenant=None, owner_tenant="acme")  # v1: not said
    assert not receipt_is_foreign(api, "bob", "bob", tenant="globex", owner_tenant=None)  # not known
