"""The pure parts of the FCM adapter: message per tier, data strings, collapse ids, the 4 KB rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.push.fcm_message import (
    ELLIPSIS,
    FCM_LIMIT_BYTES,
    PayloadTooLarge,
    build_message,
    collapse_id,
    data_strings,
    fit_message,
    payload_size,
)
from schemas.models import ChannelMessage, Tier

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def msg(tier: Tier = Tier.HIGH, payload: dict[str, object] | None = None, **kw: object) -> ChannelMessage:
    fields: dict[str, object] = dict(
        notification_id="n-1",
        event_id="e-1",
        event_type="payment_receipt",
        user_id="u-1",
        channel="push",
        lane="priority",
        tier=tier,
        category="payments",
        recipient="u-1",
        template="payment_receipt",
        locale="en",
        idempotency_key="msg_k",
        occurred_at=NOW,
        payload=json.dumps(payload or {}),
    )
    fields.update(kw)
    return ChannelMessage(**fields)  # type: ignore[arg-type]


def build(m: ChannelMessage, title: str = "T", body: str = "B", ttl_s: int = 3600) -> dict[str, object]:
    return build_message("tok", m, title=title, body=body, idempotency_key="msg_k", ttl_s=ttl_s, now=NOW)


@pytest.mark.parametrize(
    ("tier", "android", "apns"),
    [
        (Tier.CRITICAL, "HIGH", "10"),
        (Tier.HIGH, "HIGH", "10"),
        (Tier.MEDIUM, "NORMAL", "5"),
        (Tier.LOW, "NORMAL", "5"),
        (Tier.SYSTEM, "NORMAL", "5"),
    ],
)
def test_urgency_follows_tier(tier: Tier, android: str, apns: str) -> None:
    m = build(msg(tier))
    assert m["android"]["priority"] == android  # type: ignore[index]
    assert m["apns"]["headers"]["apns-priority"] == apns  # type: ignore[index]


def test_ttl_and_apns_expiration_from_settings() -> None:
    m = build(msg(), ttl_s=600)
    assert m["android"]["ttl"] == "600s"  # type: ignore[index]
    assert m["apns"]["headers"]["apns-expiration"] == str(int(NOW.timestamp()) + 600)  # type: ignore[index]


def test_message_expiry_shortens_ttl() -> None:
    m = build(msg(expires_at=NOW + timedelta(seconds=90)), ttl_s=3600)
    assert m["android"]["ttl"] == "90s"  # type: ignore[index]
    assert m["apns"]["headers"]["apns-expiration"] == str(int(NOW.timestamp()) + 90)  # type: ignore[index]
    past = build(msg(expires_at=NOW - timedelta(seconds=5)))
    assert past["android"]["ttl"] == "0s"  # type: ignore[index]


def test_notification_and_token() -> None:
    m = build(msg(), title="Paid", body="12.50 EUR")
    assert m["token"] == "tok"
    assert m["notification"] == {"title": "Paid", "body": "12.50 EUR"}


def test_data_is_strings_only_and_reserved_keys_dropped() -> None:
    data = data_strings(
        msg(
            payload={
                "amount": 12.5,
                "n": 3,
                "ok": True,
                "items": [1, 2],
                "none": None,
                "s": "x",
                "from": "evil",
                "google.x": "1",
                "gcm_y": "1",
                "notification": "z",
                "notification_id": "spoof",
            }
        ),
        "msg_k",
    )
    assert all(isinstance(v, str) for v in data.values())
    assert data["amount"] == "12.5" and data["n"] == "3" and data["ok"] == "true"
    assert data["items"] == "[1,2]" and data["none"] == "null" and data["s"] == "x"
    assert not {"from", "google.x", "gcm_y", "notification"} & data.keys()
    assert data["notification_id"] == "n-1"  # Herald's own keys win
    assert data["idempotency_key"] == "msg_k" and data["tier"] == "high" and data["category"] == "payments"


def test_collapse_id_defaults_to_notification_and_honours_payload() -> None:
    assert collapse_id(msg()) == "n-1"
    assert collapse_id(msg(payload={"collapse_key": "order-42"})) == "order-42"
    long = collapse_id(msg(payload={"collapse_key": "x" * 100}))
    assert len(long.encode()) <= 64 and long == collapse_id(msg(payload={"collapse_key": "x" * 100}))
    m = build(msg(payload={"collapse_key": "order-42"}))
    assert m["android"]["collapse_key"] == "order-42"  # type: ignore[index]
    assert m["apns"]["headers"]["apns-collapse-id"] == "order-42"  # type: ignore[index]
    assert "collapse_key" not in m["data"]  # type: ignore[operator]


def test_small_message_is_untouched() -> None:
    m = build(msg())
    assert fit_message(m) == (m, False)


def test_long_body_is_truncated_to_fit_with_ellipsis() -> None:
    m = build(msg(), body="word " * 2000)
    fitted, truncated = fit_message(m)
    body = fitted["notification"]["body"]
    assert truncated and body.endswith(ELLIPSIS)
    assert payload_size(fitted) <= FCM_LIMIT_BYTES
    # as long as possible: one more character would not fit
    longer = {**fitted, "notification": {**fitted["notification"], "body": "word " * 2000}}
    assert payload_size(longer) > FCM_LIMIT_BYTES
    assert fitted["token"] == "tok" and fitted["data"] == m["data"]


def test_multibyte_body_is_cut_on_character_boundary() -> None:
    fitted, truncated = fit_message(build(msg(), body="ção🙂" * 2000))
    assert truncated
    assert payload_size(fitted) <= FCM_LIMIT_BYTES
    fitted["notification"]["body"].encode("utf-8")  # a valid string, no half characters


def test_token_is_not_counted() -> None:
    m = build(msg())
    assert payload_size(m) == payload_size({**m, "token": "t" * 5000})


def test_data_too_large_is_refused() -> None:
    with pytest.raises(PayloadTooLarge) as err:
        fit_message(build(msg(payload={"blob": "x" * 5000})))
    assert err.value.size > FCM_LIMIT_BYTES


@settings(max_examples=150, deadline=None)
@given(
    title=st.text(max_size=300),
    body=st.text(max_size=6000),
    blob=st.text(max_size=4000),
    limit=st.integers(min_value=600, max_value=FCM_LIMIT_BYTES),
)
def test_fit_never_exceeds_limit(title: str, body: str, blob: str, limit: int) -> None:
    m = build(msg(payload={"blob": blob}), title=title, body=body)
    try:
        fitted, truncated = fit_message(m, limit)
    except PayloadTooLarge:
        assert payload_size({**m, "notification": {"title": title, "body": ""}}) > limit
        return
    assert payload_size(fitted) <= limit
    assert truncated == (fitted != m)
    if truncated:
        kept = fitted["notification"]["body"]
        assert kept == "" or kept.endswith(ELLIPSIS)
        assert body.startswith(kept.removesuffix(ELLIPSIS))
