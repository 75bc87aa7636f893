"""A local stand-in for Amazon SNS's message signing: a fresh RSA key and certificate that sign
SNS HTTP(S) messages exactly as SNS does, so tests and ``herald dev`` can post SES events that
Herald's endpoint verifies (its certificate URL pattern pointed at where :attr:`cert_pem` is served).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from channels.sns_verify import signing_string

__all__ = ["SnsSigner"]


class SnsSigner:
    def __init__(
        self, cert_url: str, topic_arn: str = "arn:aws:sns:us-east-1:123456789012:herald-ses"
    ) -> None:
        self.cert_url = cert_url
        self.topic_arn = topic_arn
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        """``message`` with SignatureVersion, SigningCertURL and Signature added."""
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(signing_string(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": self.cert_url,
            "Signature": base64.b64encode(signature).decode(),
        }

    def notification(self, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A signed SNS Notification carrying ``payload`` (an SES event) as its Message."""
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": self.topic_arn,
                "Message": json.dumps(payload),
                "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                **extra,
            }
        )

    def subscription_confirmation(self, subscribe_url: str) -> dict[str, Any]:
        return self.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": uuid.uuid4().hex,
                "TopicArn": self.topic_arn,
                "Message": f"You have chosen to subscribe to the topic {self.topic_arn}.",
                "SubscribeURL": subscribe_url,
                "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
        )
