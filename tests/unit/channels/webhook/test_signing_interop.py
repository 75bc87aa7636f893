"""Byte-for-byte interoperability with the independent ``standardwebhooks`` PyPI implementation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import standardwebhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.webhook.signing import NoMatchingSignature, generate_secret, sign, signing_headers, verify


def _now() -> tuple[datetime, int]:
    # The library's verify() reads the wall clock itself (5-minute tolerance), so our side of
    # each test must use the time of the test, not of the module's import.
    now = datetime.now(UTC).replace(microsecond=0)
    return now, int(now.timestamp())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(
    data=json_values,
    nbytes=st.integers(24, 64),
    msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,32}", fullmatch=True),
)
def test_they_verify_ours_and_we_verify_theirs(data: object, nbytes: int, msg_id: str) -> None:
    NOW, TS = _now()
    secret = generate_secret(nbytes)
    body = json.dumps({"type": "system.x", "data": data}, ensure_ascii=False).encode()
    theirs = standardwebhooks.Webhook(secret)

    ours_headers = signing_headers(secret, msg_id, TS, body)
    assert theirs.verify(body, ours_headers) == json.loads(body)

    their_sig = theirs.sign(msg_id, NOW, body.decode())
    assert their_sig == sign(secret, msg_id, TS, body)  # byte for byte
    their_headers = {"webhook-id": msg_id, "webhook-timestamp": str(TS), "webhook-signature": their_sig}
    assert verify(secret, their_headers, body, now=NOW).msg_id == msg_id


def test_rotation_across_implementations() -> None:
    NOW, TS = _now()
    old, new, other = generate_secret(), generate_secret(32), generate_secret()
    body = b'{"type":"system.rotated","data":{}}'
    headers = signing_headers([new, old], "msg_rot", TS, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    # receivers that know only the old or only the new secret both accept the message
    standardwebhooks.Webhook(old).verify(body, headers)
    standardwebhooks.Webhook(new).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(body, headers)
    # and our receiver with several secrets accepts their single-secret signature of each
    for s in (old, new):
        sig = standardwebhooks.Webhook(s).sign("msg_rot", NOW, body.decode())
        verify(
            [new, old],
            {"webhook-id": "msg_rot", "webhook-timestamp": str(TS), "webhook-signature": sig},
            body,
            now=NOW,
        )
    with pytest.raises(NoMatchingSignature):
        sig = standardwebhooks.Webhook(other).sign("msg_rot", NOW, body.decode())
        verify(
            [new, old],
            {"webhook-id": "msg_rot", "webhook-timestamp": str(TS), "webhook-signature": sig},
            body,
            now=NOW,
        )
