"""Unsubscribe link tokens: bound to one recipient and category, expiring, unforgeable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.api.unsubscribe_token import (
    BadUnsubscribeToken,
    UnsubscribeClaim,
    sign_unsubscribe,
    verify_unsubscribe,
)

KEY = b"k" * 32
OTHER = b"o" * 32


@given(
    user=st.text(min_size=1, max_size=60),
    category=st.text(min_size=1, max_size=40),
    expires=st.integers(min_value=1, max_value=2**40),
)
def test_round_trip(user: str, category: str, expires: int) -> None:
    token = sign_unsubscribe(KEY, user, category, expires)
    assert verify_unsubscribe([KEY], token, now=expires - 1) == UnsubscribeClaim(user, category, expires)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t, "expired"),  # now == expiry: expired
        (lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), "bad_signature"),
        (lambda t: "x" + t, "bad_signature"),  # another payload under the same signature
        (lambda t: t.replace(".", ""), "malformed"),
        (lambda t: "." + t.split(".")[1], "malformed"),
        (lambda t: t + "." * 2000, "malformed"),
        (lambda t: t.split(".")[0] + ".***", "malformed"),
    ],
)
def test_refused(mutate: object, reason: str) -> None:
    token = sign_unsubscribe(KEY, "alice", "marketing", 1000)
    now = 1000 if reason == "expired" else 999
    with pytest.raises(BadUnsubscribeToken) as err:
        verify_unsubscribe([KEY], mutate(token), now=now)  # type: ignore[operator]
    assert err.value.reason == reason


def test_bound_to_recipient_and_category() -> None:
    """Changing the user or the category inside a signed payload breaks the signature."""
    token = sign_unsubscribe(KEY, "alice", "marketing", 1000)
    bob = sign_unsubscribe(KEY, "bob", "marketing", 1000)
    forged = bob.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(BadUnsubscribeToken) as err:
        verify_unsubscribe([KEY], forged, now=1)
    assert err.value.reason == "bad_signature"


def test_key_rotation_and_wrong_key() -> None:
    token = sign_unsubscribe(OTHER, "alice", "tips", 1000)
    assert verify_unsubscribe([KEY, OTHER], token, now=1).category == "tips"
    with pytest.raises(BadUnsubscribeToken):
        verify_unsubscribe([KEY], token, now=1)


def test_signed_non_object_payload_is_malformed() -> None:
    import base64
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'["alice"]').rstrip(b"=").decode()
    mac = (
        base64.urlsafe_b64encode(hmac.new(KEY, payload.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(BadUnsubscribeToken) as err:
        verify_unsubscribe([KEY], f"{payload}.{mac}", now=1)
    assert err.value.reason == "malformed"


def test_the_tenant_is_signed_and_absent_for_the_default_tenant() -> None:
    plain = sign_unsubscribe(KEY, "alice", "marketing", 1000)
    acme = sign_unsubscribe(KEY, "alice", "marketing", 1000, tenant="acme")
    assert plain == sign_unsubscribe(KEY, "alice", "marketing", 1000, tenant="")  # links as before
    assert verify_unsubscribe([KEY], plain, now=1).tenant == ""
    assert verify_unsubscribe([KEY], acme, now=1).tenant == "acme"
    forged = acme.split(".")[0] + "." + plain.split(".")[1]  # another tenant's payload, this signature
    with pytest.raises(BadUnsubscribeToken):
        verify_unsubscribe([KEY], forged, now=1)
