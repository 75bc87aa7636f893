"""Bearer tokens: JWTs signed with a key from settings (HS256 or EdDSA), with expiry and audience.

The user is the token's ``sub`` in the tenant of its optional ``tenant`` claim (absent or empty:
the default tenant ``''``); nothing in a request body or path can name another user or tenant.

A tenant may have keys of its own (``api.jwt_tenant_keys``): where tenants are different customers,
each signing its users' tokens, one holding the install key must not mint tokens for another's
users. The (unverified) ``tenant`` claim only chooses the keys to try: a token naming a tenant
with keys verifies with those alone, any other with the install key alone, so a signature good
for one tenant's keys never vouches for another tenant's claim. The install algorithm applies to
every tenant's keys, and they are checked at start: an HS256 key must be a secret (not a PEM, an
SSH, JWK or base64 DER key: a public key used as an HMAC secret lets anyone who has it mint
tokens), and no key may be another's (the install key's or another tenant's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_der_public_key,
    load_pem_private_key,
    load_pem_public_key,
)

from consumers.api.problems import ApiError
from consumers.infra.settings import ApiSettings
from schemas.identifiers import identifier_problem

__all__ = [
    "MIN_HS256_KEY_BYTES",
    "TENANT_CLAIM",
    "AuthError",
    "Principal",
    "TokenKeys",
    "hs256_key_problem",
    "mint_token",
    "verify_token",
]

MIN_HS256_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
_REQUIRED_CLAIMS = ["exp", "sub", "aud", "iat"]
_MAX_SUB_LEN = 200
TENANT_CLAIM = "tenant"


class AuthError(ApiError):
    """The request is not authenticated; the message is safe to show the caller."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    token_id: str  # what the per-token rate limit counts: the jti, else a digest of the token
    tenant: str = ""  # the token's tenant claim; '' = the default tenant
    valid_until: float | None = None  # epoch seconds: the token's exp plus the leeway (streams end there)


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """The keys of one algorithm, checked once at start so a bad config fails loudly there."""

    algorithm: str
    verify_key: object
    signing_key: object | None
    # tenant -> its verification keys (the first HS256 secret also signs for it)
    tenants: Mapping[str, tuple[object, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, api: ApiSettings) -> TokenKeys:
        secret = api.jwt_secret.get_secret_value() if api.jwt_secret is not None else None
        tenants = {
            t: tuple(_tenant_key(api, t, k.get_secret_value()) for k in ks)
            for t, ks in api.jwt_tenant_keys.items()
        }
        if any(not ks for ks in tenants.values()):
            raise ValueError("HERALD_API__JWT_TENANT_KEYS: a tenant with an empty list of keys")
        if api.jwt_algorithm == "HS256":
            if secret is None or len(secret.encode()) < MIN_HS256_KEY_BYTES:
                raise ValueError(
                    f"HERALD_API__JWT_SECRET must be set to at least {MIN_HS256_KEY_BYTES} bytes for HS256"
                )
            why = hs256_key_problem(secret)
            if why is not None:
                raise ValueError(f"HERALD_API__JWT_SECRET: {why}")
            keys = cls("HS256", secret.encode(), secret.encode(), tenants)
        else:
            signing = load_pem_private_key(secret.encode(), password=None) if secret else None
            if api.jwt_public_key:
                public: object = _eddsa_public(
                    load_pem_public_key(api.jwt_public_key.encode()), "JWT_PUBLIC_KEY"
                )
            elif signing is not None:
                public = _eddsa_public(signing.public_key(), "JWT_SECRET")
            else:
                raise ValueError("EdDSA needs HERALD_API__JWT_PUBLIC_KEY (or the private key in JWT_SECRET)")
            keys = cls("EdDSA", public, signing, tenants)
        _refuse_shared_keys(keys)
        return keys

    def for_claim(self, tenant: str) -> tuple[object, ...]:
        """The keys that may verify a token claiming ``tenant``: its own if it has some, else the install key."""
        return self.tenants.get(tenant, (self.verify_key,))


def hs256_key_problem(key: str) -> str | None:
    """Pure: why ``key`` looks like key material rather than an HMAC secret, or None. A public key
    taken for a secret would let anyone who has it mint tokens; PyJWT refuses a PEM or SSH key as
    an HMAC secret only when a token arrives (every token a 401), not at start."""
    text = key.strip()
    if "-----BEGIN" in text:
        return "a PEM key, not an HS256 secret (EdDSA keys need HERALD_API__JWT_ALGORITHM=EdDSA)"
    if text.startswith(("ssh-", "ecdsa-sha2-")):
        return "an SSH key, not an HS256 secret"
    try:
        jwk = json.loads(text)
    except ValueError:
        jwk = None
    if isinstance(jwk, dict) and "kty" in jwk:
        return "a JWK, not an HS256 secret (give the secret itself)"
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            der = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        for load in (load_der_public_key, lambda b: load_der_private_key(b, password=None)):
            try:
                load(der)
            except UnsupportedAlgorithm:
                pass  # DER of a key all the same
            except (ValueError, TypeError):
                continue
            return "a base64 DER key, not an HS256 secret"
    return None


def _eddsa_public(key: object, where: str) -> object:
    if not isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        raise ValueError(f"HERALD_API__{where}: not an Ed25519/Ed448 key, as EdDSA needs")
    return key


def _tenant_key(api: ApiSettings, tenant: str, key: str) -> object:
    where = f"HERALD_API__JWT_TENANT_KEYS[{tenant!r}]"
    if api.jwt_algorithm == "HS256":
        if len(key.encode()) < MIN_HS256_KEY_BYTES:
            raise ValueError(f"{where}: HS256 keys need {MIN_HS256_KEY_BYTES}+ bytes")
        why = hs256_key_problem(key)
        if why is not None:
            raise ValueError(f"{where}: {why}")
        return key.encode()
    try:
        return _eddsa_public(load_pem_public_key(key.encode()), f"JWT_TENANT_KEYS[{tenant!r}]")
    except ValueError as exc:  # also cryptography's own, for what is no public key PEM
        raise ValueError(f"{where}: {exc}") from None


def _fingerprint(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    assert isinstance(key, Ed25519PublicKey | Ed448PublicKey)
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _refuse_shared_keys(keys: TokenKeys) -> None:
    """A tenant key that is the install key's or another tenant's vouches for more than its tenant."""
    owner: dict[bytes, str] = {_fingerprint(keys.verify_key): "the install key"}
    for tenant, ks in keys.tenants.items():
        for key in dict.fromkeys(_fingerprint(k) for k in ks):  # a key listed twice for one tenant: harmless
            if key in owner:
                raise ValueError(
                    f"HERALD_API__JWT_TENANT_KEYS[{tenant!r}]: a key that is also {owner[key]}'s; "
                    "each tenant needs keys of its own"
                )
            owner[key] = f"tenant {tenant!r}"


def _claimed_tenant(token: str) -> str:
    """The ``tenant`` claim before the signature is checked: it only chooses which keys to try."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("invalid token") from exc
    tenant = claims.get(TENANT_CLAIM, "")
    if not isinstance(tenant, str):  # 0, false, [], {}, null are not "no tenant"
        raise AuthError("invalid token tenant")
    return tenant


def _decode(token: str, keys: TokenKeys, api: ApiSettings) -> dict[str, Any]:
    candidates = keys.for_claim(_claimed_tenant(token)) if keys.tenants else (keys.verify_key,)
    for i, key in enumerate(candidates):
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[keys.algorithm],  # pinned: an "alg": "none" or HS/EdDSA swap is refused
                audience=api.jwt_audience,
                issuer=api.jwt_issuer,
                leeway=api.jwt_leeway_s,
                options={"require": [*_REQUIRED_CLAIMS, *(["iss"] if api.jwt_issuer else [])]},
            )
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            if i + 1 < len(candidates):
                continue  # a tenant's older key, during a rotation (or one this token's shape does not fit)
            raise
        return claims
    raise AssertionError("unreachable: candidates is never empty")


def verify_token(token: str, keys: TokenKeys, api: ApiSettings) -> Principal:
    """The principal of a valid token; :class:`AuthError` for anything else (no detail leaks)."""
    try:
        claims = _decode(token, keys, api)
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError("token audience is not this API") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid token") from exc
    sub = claims.get("sub")
    # The subject and tenant become SQL parameters and key parts: the identifier rules hold for
    # them as for an emitted event's user_id (no control characters, lone surrogates, NULs).
    if not isinstance(sub, str) or identifier_problem(sub, limit=_MAX_SUB_LEN) is not None:
        raise AuthError("invalid token subject")
    tenant = claims.get(TENANT_CLAIM, "")
    if not isinstance(tenant, str) or (tenant and identifier_problem(tenant, limit=_MAX_SUB_LEN) is not None):
        raise AuthError("invalid token tenant")
    jti = claims.get("jti")
    token_id = jti if isinstance(jti, str) and jti else hashlib.sha256(token.encode()).hexdigest()[:32]
    owner = f"{tenant}/{sub}" if tenant else sub
    valid_until = float(claims["exp"]) + api.jwt_leeway_s  # exp is required, and numeric (PyJWT checks)
    return Principal(user_id=sub, token_id=f"{owner}:{token_id}", tenant=tenant, valid_until=valid_until)


def mint_token(
    keys: TokenKeys,
    api: ApiSettings,
    user_id: str,
    *,
    now: datetime,
    ttl: timedelta | None = None,
    tenant: str = "",
) -> str:
    """A token for ``user_id`` in ``tenant`` (the demo, tests, ``herald token``); apps get theirs
    from their own IdP, with a ``tenant`` claim when they serve more than one tenant."""
    signing = keys.signing_key
    if tenant in keys.tenants:
        if keys.algorithm != "HS256":
            raise ValueError(
                f"tenant {tenant!r} has its own public keys: mint its tokens with its private key"
            )
        signing = keys.tenants[tenant][0]
    if signing is None:
        raise ValueError("no signing key configured (HERALD_API__JWT_SECRET)")
    lifetime = ttl if ttl is not None else timedelta(seconds=api.token_ttl_s)
    claims: dict[str, object] = {
        "sub": user_id,
        "aud": api.jwt_audience,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if api.jwt_issuer:
        claims["iss"] = api.jwt_issuer
    if tenant:
        claims[TENANT_CLAIM] = tenant
    return jwt.encode(claims, signing, algorithm=keys.algorithm)  # type: ignore[arg-type]
