"""SES events (bounce, complaint, delivery) read into Herald's feedback. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.email.ses_events import FeedbackKind, decode_tag, encode_tag, read_ses_event


def event(kind: str, body: dict[str, Any], *, key: str = "eventType") -> dict[str, Any]:
    return {
        key: kind,
        "mail": {
            "messageId": "0100-ses-id",
            "destination": ["a@example.org"],
            "tags": {"herald_notification": [encode_tag("n-1")], "herald_user": [encode_tag("user/ü 1")]},
        },
        kind.lower(): body,
    }


@pytest.mark.parametrize(
    ("kind", "body", "expected", "reason", "addresses"),
    [
        (
            "Bounce",
            {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": "A@Example.org"}],
            },
            FeedbackKind.SUPPRESS,
            "bounce_permanent",
            ("a@example.org",),
        ),
        (
            "Bounce",
            {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "a@example.org"}]},
            FeedbackKind.TRANSIENT,
            "bounce_transient",
            ("a@example.org",),
        ),
        (
            "Bounce",
            {"bounceType": "Undetermined", "bouncedRecipients": []},
            FeedbackKind.TRANSIENT,
            "bounce_transient",
            (),
        ),
        (
            "Complaint",
            {"complainedRecipients": [{"emailAddress": "b@example.org"}], "complaintFeedbackType": "abuse"},
            FeedbackKind.SUPPRESS,
            "complaint",
            ("b@example.org",),
        ),
        (
            "Delivery",
            {"recipients": ["a@example.org"]},
            FeedbackKind.DELIVERED,
            "delivery",
            ("a@example.org",),
        ),
        ("Open", {}, FeedbackKind.IGNORED, "open", ()),
    ],
)
def test_events(
    kind: str, body: dict[str, Any], expected: FeedbackKind, reason: str, addresses: tuple[str, ...]
) -> None:
    for key in ("eventType", "notificationType"):  # event publishing, identity notifications
        fb = read_ses_event(event(kind, body, key=key))
        assert (fb.kind, fb.reason, fb.addresses) == (expected, reason, addresses)
        assert (fb.notification_id, fb.user_id, fb.provider_message_id) == ("n-1", "user/ü 1", "0100-ses-id")


@pytest.mark.parametrize(
    "junk",
    [
        {},
        {"eventType": "Bounce"},
        {"eventType": "Bounce", "bounce": "x", "mail": []},
        {"mail": {"tags": "x"}},
    ],
)
def test_malformed_events_are_ignored_or_empty(junk: dict[str, Any]) -> None:
    fb = read_ses_event(junk)
    assert fb.addresses == () and fb.notification_id is None


@given(st.text(max_size=150))
def test_tags_round_trip(value: str) -> None:
    encoded = encode_tag(value)
    if encoded is not None:
        assert decode_tag(encoded) == value
        assert all(c.isalnum() for c in encoded)
