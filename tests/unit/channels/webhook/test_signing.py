"""Standard Webhooks signing: known vectors, rotation, every rejection with its error class."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.webhook.signing import (
    FutureTimestamp,
    InvalidSecret,
    MalformedHeader,
    MissingHeader,
    NoMatchingSignature,
    StaleTimestamp,
    TimestampOutOfTolerance,
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    sign,
    signing_headers,
    verify,
)

# The example of the Standard Webhooks specification (and svix's docs/test suites).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

TS = 1_764_072_000
BODY = b'{"type":"system.ping","data":{"n":1}}'


def test_spec_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    assert (
        verify(
            SPEC_SECRET,
            {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIG},
            SPEC_BODY,
            now=SPEC_TS,
        ).msg_id
        == SPEC_ID
    )


def test_signature_is_hmac_sha256_of_id_ts_body() -> None:
    key = b"k" * 32
    expected = base64.b64encode(hmac.new(key, b"m1.%d." % TS + BODY, hashlib.sha256).digest()).decode()
    assert sign(key, "m1", TS, BODY) == f"v1,{expected}"
    assert sign("whsec_" + base64.b64encode(key).decode(), "m1", TS, BODY) == f"v1,{expected}"


@pytest.mark.parametrize("nbytes", [24, 32, 64])
def test_generate_secret(nbytes: int) -> None:
    secret = generate_secret(nbytes)
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == nbytes
    assert generate_secret(nbytes) != secret


@pytest.mark.parametrize("nbytes", [0, 23, 65])
def test_generate_secret_length_bounds(nbytes: int) -> None:
    with pytest.raises(ValueError):
        generate_secret(nbytes)


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("whsec_AAECAw==", b"\x00\x01\x02\x03"),
        ("whsec_AAECAw", b"\x00\x01\x02\x03"),  # unpadded, as the reference implementations accept
        ("AAECAw==", b"\x00\x01\x02\x03"),  # bare base64
        (b"raw-bytes", b"raw-bytes"),
    ],
)
def test_decode_secret(secret: str | bytes, key: bytes) -> None:
    assert decode_secret(secret) == key


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not*base64!", "whsec_A", b""])
def test_invalid_secrets(secret: str | bytes) -> None:
    with pytest.raises(InvalidSecret):
        decode_secret(secret)


def test_rotation_signs_once_per_secret_and_either_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    header = sign([new, old], "m1", TS, BODY)
    parts = header.split(" ")
    assert parts == [sign(new, "m1", TS, BODY), sign(old, "m1", TS, BODY)]
    headers = {"webhook-id": "m1", "webhook-timestamp": str(TS), "webhook-signature": header}
    assert verify(old, headers, BODY, now=TS).timestamp == TS
    assert verify(new, headers, BODY, now=TS).msg_id == "m1"
    # a receiver holding both secrets accepts a sender that still signs with only one
    only_old = {**headers, "webhook-signature": sign(old, "m1", TS, BODY)}
    verify([new, old], only_old, BODY, now=TS)
    with pytest.raises(NoMatchingSignature):
        verify(generate_secret(), headers, BODY, now=TS)


def _headers(secret: str, **override: str) -> dict[str, str]:
    h = signing_headers(secret, "m1", TS, BODY)
    h.update(override)
    return h


SECRET = generate_secret()


@pytest.mark.parametrize(
    ("headers", "body", "now", "error"),
    [
        ({"webhook-timestamp": str(TS), "webhook-signature": "v1,AAAA"}, BODY, TS, MissingHeader),
        ({"webhook-id": "m1", "webhook-signature": "v1,AAAA"}, BODY, TS, MissingHeader),
        ({"webhook-id": "m1", "webhook-timestamp": str(TS)}, BODY, TS, MissingHeader),
        (_headers(SECRET, **{"webhook-id": "  "}), BODY, TS, MissingHeader),
        (_headers(SECRET, **{"webhook-timestamp": "12.5"}), BODY, TS, MalformedHeader),
        (_headers(SECRET, **{"webhook-timestamp": "-5"}), BODY, TS, MalformedHeader),
        (_headers(SECRET, **{"webhook-timestamp": "soon"}), BODY, TS, MalformedHeader),
        (_headers(SECRET, **{"webhook-signature": "garbage"}), BODY, TS, MalformedHeader),
        (_headers(SECRET, **{"webhook-signature": "v1,not*base64"}), BODY, TS, MalformedHeader),
        (_headers(SECRET, **{"webhook-signature": "v1a,AAAA"}), BODY, TS, MalformedHeader),  # no v1 at all
        (_headers(SECRET, **{"webhook-signature": " ".join(["v1,AAAA"] * 17)}), BODY, TS, MalformedHeader),
        (_headers(SECRET), BODY, TS + 301, StaleTimestamp),
        (_headers(SECRET), BODY, TS - 301, FutureTimestamp),
        (_headers(SECRET), BODY + b" ", TS, NoMatchingSignature),  # body changed by one byte
        (_headers(SECRET, **{"webhook-id": "m2"}), BODY, TS, NoMatchingSignature),  # id swapped
        (_headers(SECRET, **{"webhook-timestamp": str(TS + 1)}), BODY, TS, NoMatchingSignature),
        (_headers(SECRET, **{"webhook-signature": "v1,AAAA"}), BODY, TS, NoMatchingSignature),
    ],
)
def test_rejections(headers: dict[str, str], body: bytes, now: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        verify(SECRET, headers, body, now=now)
    assert isinstance(info.value, WebhookVerificationError)
    assert str(info.value)  # a clear message, not an empty exception


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_tolerance_edges_are_inclusive(skew: int) -> None:
    assert verify(SECRET, _headers(SECRET), BODY, now=TS + skew).timestamp == TS


def test_tolerance_is_configurable_and_now_may_be_a_datetime() -> None:
    now = datetime.fromtimestamp(TS + 30, UTC)
    with pytest.raises(TimestampOutOfTolerance):
        verify(SECRET, _headers(SECRET), BODY, now=now, tolerance=10)
    verify(SECRET, _headers(SECRET), BODY, now=now, tolerance=60)


def test_headers_are_case_insensitive_and_unknown_versions_ignored() -> None:
    h = _headers(SECRET)
    upper = {k.title(): v for k, v in h.items()}
    upper["Webhook-Signature"] = "v1a,c29tZXRoaW5n " + upper["Webhook-Signature"]
    verify(SECRET, upper, BODY, now=TS)


def test_leading_zeros_in_timestamp_are_signed_as_sent() -> None:
    ts = "0" + str(TS)
    sig = base64.b64encode(
        hmac.new(decode_secret(SECRET), f"m1.{ts}.".encode() + BODY, hashlib.sha256).digest()
    ).decode()
    headers = {"webhook-id": "m1", "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}
    verify(SECRET, headers, BODY, now=TS)


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_sign_refuses_bad_timestamps(bad: object) -> None:
    with pytest.raises(ValueError):
        sign(SECRET, "m1", bad, BODY)  # type: ignore[arg-type]


def test_sign_refuses_header_injection_and_empty_secret_lists() -> None:
    for bad_id in ("m1\r\nx: y", "", "a b", "é", "x" * 257):
        with pytest.raises(ValueError):
            sign(SECRET, bad_id, TS, BODY)
    with pytest.raises(InvalidSecret):
        sign([], "m1", TS, BODY)


@given(
    body=st.binary(max_size=2048),
    msg_id=st.from_regex(r"[\x21-\x7e]{1,60}", fullmatch=True),
    ts=st.integers(0, 2**40),
)
def test_round_trip(body: bytes, msg_id: str, ts: int) -> None:
    headers = signing_headers(SECRET, msg_id, ts, body)
    assert verify(SECRET, headers, body, now=ts).msg_id == msg_id
