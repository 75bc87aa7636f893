"""What escalating a push decides before its row is written, and which rows of a batch were first."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.quiet_hours import QuietWindow
from consumers.fallback.context import Contact
from consumers.fallback.decisions import escalation_email_key
from consumers.fallback.escalation import PUSH_TIMEOUT, Ask, Plan, firsts, plan_escalation
from schemas.models import Channel, ChannelMessage, Lane, Tier

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL_QUIET = frozenset({Channel.EMAIL})
PUSH = ChannelMessage(
    notification_id="n1",
    event_id="e1",
    event_type="payment_receipt",
    user_id="u1",
    channel=Channel.PUSH,
    lane=Lane.PRIORITY,
    tier=Tier.HIGH,
    category="payments",
    recipient="u1",
    template="payment_receipt",
    locale="en",
    idempotency_key="push-key",
    occurred_at=T0,
)


def _contact(
    email: str | None = "u1@example.com",
    *,
    quiet: QuietWindow | None = None,
    preferences: dict[tuple[str, Channel], bool] | None = None,
) -> Contact:
    return Contact(email, "en", "UTC", ZoneInfo("UTC"), quiet, preferences or {})


def _plan(contact: Contact) -> Plan:
    return plan_escalation(Ask(PUSH, PUSH_TIMEOUT, contact), now=T0, quiet_channels=EMAIL_QUIET)


def test_a_push_escalates_to_email_keyed_by_the_push() -> None:
    assert _plan(_contact()) == Plan(escalation_email_key("push-key"), "email")


def test_no_address_and_an_opt_out_write_their_row_without_an_email() -> None:
    key = escalation_email_key("push-key")
    assert _plan(_contact(None)) == Plan(key, "no_address")
    opted_out = _contact(preferences={("payments", Channel.EMAIL): False})
    assert _plan(opted_out) == Plan(key, "opted_out")


def test_quiet_hours_hold_it_until_they_end_and_write_no_row() -> None:
    plan = _plan(_contact(quiet=QuietWindow(time(8, 0), time(10, 0))))
    assert plan == Plan(held_until=datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


@given(st.lists(st.sampled_from("abcd"), max_size=10), st.sets(st.sampled_from("abcd")))
def test_a_key_is_first_once_and_only_if_this_statement_inserted_it(
    keys: list[str], inserted: set[str]
) -> None:
    out = firsts(keys, inserted)
    assert len(out) == len(keys)
    for key in set(keys):
        mine = [f for k, f in zip(keys, out, strict=True) if k == key]
        assert mine == ([True] + [False] * (len(mine) - 1) if key in inserted else [False] * len(mine))
