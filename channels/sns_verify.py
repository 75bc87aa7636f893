"""Verify an Amazon SNS HTTP(S) message: the signing certificate's URL, then the RSA signature.

Pure: the certificate's PEM is an argument (the caller fetches it, only from a URL that
:func:`cert_url_allowed` accepts). The string SNS signs is the message's fields, each as
``Name\\nvalue\\n``, in a fixed order per message type (AWS "Verifying the signatures of Amazon
SNS messages"); SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.webhook.signing import WebhookVerificationError

__all__ = ["SNS_CERT_HOST", "SnsSignatureError", "cert_url_allowed", "signing_string", "verify_sns"]

# sns.<region>.amazonaws.com (and .com.cn): where AWS serves the signing certificates.
SNS_CERT_HOST = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"

# Both confirmations sign the same fields (AWS lists one set for the two).
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


class SnsSignatureError(WebhookVerificationError):
    """The message is not a verifiable SNS message (the reason says why)."""


def cert_url_allowed(url: str, host_pattern: str = SNS_CERT_HOST, *, scheme: str = "https") -> bool:
    """Whether ``url`` is an SNS signing certificate's URL: the scheme, a host matching
    ``host_pattern`` exactly, a ``.pem`` path, nothing else (no user info, no port games). Pure."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != scheme or parts.username or parts.password or parts.query or parts.fragment:
        return False
    host = parts.hostname or ""
    if port is not None and f"{host}:{port}" != parts.netloc:
        return False
    return bool(re.fullmatch(host_pattern, host)) and parts.path.endswith(".pem")


def signing_string(message: Mapping[str, object]) -> bytes:
    """The bytes SNS signed for ``message``. Pure."""
    fields = _FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise SnsSignatureError(f"unknown SNS message type {message.get('Type')!r}")
    out = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue  # the one optional field
            raise SnsSignatureError(f"missing {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def verify_sns(message: Mapping[str, object], cert_pem: bytes) -> None:
    """Raise :class:`SnsSignatureError` unless ``message`` is signed by ``cert_pem``'s key. Pure."""
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise SnsSignatureError(f"unsupported SignatureVersion {message.get('SignatureVersion')!r}")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except (ValueError, binascii.Error) as exc:
        raise SnsSignatureError(f"unreadable signature or certificate: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsSignatureError("the certificate's key is not RSA")
    try:
        key.verify(signature, signing_string(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise SnsSignatureError("signature does not match") from exc
