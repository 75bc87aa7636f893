"""SNS message signatures: a locally generated signing certificate; forged messages are rejected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.sns_verify import SnsSignatureError, cert_url_allowed, signing_string, verify_sns
from consumers.devstack.sns_signer import SnsSigner

SIGNER = SnsSigner("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem")


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_verifies(version: str) -> None:
    msg = SIGNER.sign(SIGNER.notification({"eventType": "Bounce"}), version)
    verify_sns(msg, SIGNER.cert_pem)
    verify_sns(
        SIGNER.subscription_confirmation("https://sns.us-east-1.amazonaws.com/?Action=x"), SIGNER.cert_pem
    )


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "TopicArn"])
def test_a_forged_field_is_rejected(field: str) -> None:
    msg = SIGNER.notification({"eventType": "Delivery"})
    with pytest.raises(SnsSignatureError, match="does not match"):
        verify_sns({**msg, field: msg[field] + "x"}, SIGNER.cert_pem)


def test_another_key_is_rejected() -> None:
    forger = SnsSigner(SIGNER.cert_url)
    with pytest.raises(SnsSignatureError):
        verify_sns(forger.notification({"eventType": "Complaint"}), SIGNER.cert_pem)


def test_unsupported_versions_and_garbage_are_rejected() -> None:
    msg = SIGNER.notification({})
    for bad in ({**msg, "SignatureVersion": "3"}, {**msg, "Signature": "***"}, {**msg, "Type": "Other"}):
        with pytest.raises(SnsSignatureError):
            verify_sns(bad, SIGNER.cert_pem)
    with pytest.raises(SnsSignatureError):
        verify_sns(msg, b"not a pem")


def test_subject_is_signed_only_when_present() -> None:
    base = {"Type": "Notification", "MessageId": "m", "Message": "x", "Timestamp": "t", "TopicArn": "a"}
    assert b"Subject" not in signing_string(base)
    assert signing_string({**base, "Subject": "s"}).startswith(b"Message\nx\nMessageId\nm\nSubject\ns\n")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem", True),
        ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/cert.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com@evil.example/cert.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com/cert.txt", False),
        ("https://sns.us-east-1.amazonaws.com/cert.pem?x=1", False),
        ("https://s3.amazonaws.com/cert.pem", False),
        ("https://xsns.us-east-1.amazonaws.com/cert.pem", False),
        ("https://sns.us-east-1.amazonaws.com:99999/cert.pem", False),
        ("not a url", False),
    ],
)
def test_cert_url_must_be_an_sns_host(url: str, ok: bool) -> None:
    assert cert_url_allowed(url) is ok


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_cert_url_check_never_raises_and_rejects_non_https(tail: str) -> None:
    assert not cert_url_allowed("http://" + tail)
    assert isinstance(cert_url_allowed("https://" + tail), bool)
