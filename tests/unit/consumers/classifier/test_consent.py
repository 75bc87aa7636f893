"""The one consent check every message path uses: preferences, then quiet hours. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.consent import Verdict, consent, held_until, may_send
from consumers.classifier.quiet_hours import QuietWindow
from schemas.models import Channel, Tier

NY = ZoneInfo("America/New_York")
NIGHT = QuietWindow(time(22), time(7))


@given(
    tier=st.sampled_from(list(Tier)),
    channel=st.sampled_from(list(Channel)),
    chosen=st.sampled_from([True, False, None]),
)
def test_may_send_table(tier: Tier, channel: Channel, chosen: bool | None) -> None:
    prefs = {} if chosen is None else {("cat", channel): chosen}
    assert may_send(tier, "cat", channel, prefs) is (tier is Tier.CRITICAL or chosen is not False)
    assert may_send(tier, "cat", channel, prefs, opt_in=True) is (chosen is True)


def test_another_category_or_channel_does_not_count() -> None:
    prefs = {("activity", Channel.EMAIL): False}
    assert may_send(Tier.MEDIUM, "payments", Channel.EMAIL, prefs)
    assert may_send(Tier.MEDIUM, "activity", Channel.PUSH, prefs)
    assert not may_send(Tier.MEDIUM, "activity", Channel.EMAIL, prefs)


def test_quiet_hours_hold_only_interrupting_channels_of_holdable_tiers() -> None:
    at = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)  # 23:00 EST on 03-07, the night DST starts
    release = datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # 07:00 EDT
    for tier in (Tier.HIGH, Tier.MEDIUM, Tier.LOW):
        for channel in (Channel.EMAIL, Channel.PUSH, Channel.SMS):
            assert held_until(tier, channel, at=at, zone=NY, window=NIGHT) == release
        for channel in (Channel.IN_APP, Channel.WEBHOOK):
            assert held_until(tier, channel, at=at, zone=NY, window=NIGHT) is None
    for tier in (Tier.CRITICAL, Tier.SYSTEM):
        assert held_until(tier, Channel.EMAIL, at=at, zone=NY, window=NIGHT) is None


def test_an_opt_out_beats_quiet_hours_and_critical_beats_both() -> None:
    at = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    prefs = {("payments", Channel.EMAIL): False}
    kw = {"category": "payments", "channel": Channel.EMAIL, "at": at, "preferences": prefs, "zone": NY}
    assert consent(tier=Tier.HIGH, window=NIGHT, **kw).verdict is Verdict.OPTED_OUT  # type: ignore[arg-type]
    assert consent(tier=Tier.CRITICAL, window=NIGHT, **kw).verdict is Verdict.SEND  # type: ignore[arg-type]
    ok = consent(tier=Tier.HIGH, window=NIGHT, **{**kw, "preferences": {}})  # type: ignore[arg-type]
    assert (ok.verdict, ok.until) == (Verdict.HELD, datetime(2026, 3, 8, 11, 0, tzinfo=UTC))


@given(
    tier=st.sampled_from(list(Tier)),
    channel=st.sampled_from(list(Channel)),
    chosen=st.sampled_from([True, False, None]),
    digest=st.sampled_from([True, False, None]),
)
def test_the_digest_switch_only_ever_removes_a_digest(
    tier: Tier, channel: Channel, chosen: bool | None, digest: bool | None
) -> None:
    """digest=None (not a digest) and digest=True (switch on) change nothing; False refuses it all."""
    prefs = {} if chosen is None else {("cat", channel): chosen}
    plain = may_send(tier, "cat", channel, prefs)
    assert may_send(tier, "cat", channel, prefs, digest=digest) is (plain and digest is not False)


def test_a_digest_turned_off_is_an_opt_out_even_for_a_category_left_on() -> None:
    at = datetime(2026, 3, 8, 16, 0, tzinfo=UTC)
    prefs = {("activity", Channel.EMAIL): True}

    def verdict(digest: bool | None) -> Verdict:
        return consent(
            tier=Tier.MEDIUM,
            category="activity",
            channel=Channel.EMAIL,
            at=at,
            preferences=prefs,
            zone=NY,
            window=None,
            digest=digest,
        ).verdict

    assert verdict(False) is Verdict.OPTED_OUT
    assert verdict(True) is Verdict.SEND
    assert verdict(None) is Verdict.SEND


@given(chosen=st.sampled_from([True, False, None]))
def test_an_opt_in_channel_needs_the_stored_yes_in_consent_too(chosen: bool | None) -> None:
    # a deferred medium push is checked again at release: without the stored yes it does not go
    prefs = {} if chosen is None else {("activity", Channel.PUSH): chosen}
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)  # 08:00 in New York: outside the night window
    verdict = consent(
        tier=Tier.MEDIUM,
        category="activity",
        channel=Channel.PUSH,
        at=at,
        preferences=prefs,
        zone=NY,
        window=NIGHT,
        opt_in=True,
    )
    assert verdict.verdict is (Verdict.SEND if chosen is True else Verdict.OPTED_OUT)
