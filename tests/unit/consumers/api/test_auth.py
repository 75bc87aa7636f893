"""Bearer tokens: HS256 and EdDSA keys, expiry, audience, issuer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from consumers.api.auth import AuthError, TokenKeys, hs256_key_problem, mint_token, verify_token
from consumers.infra.settings import ApiSettings

NOW = datetime.now(UTC)


def hs() -> ApiSettings:
    return ApiSettings(jwt_secret=SecretStr("s" * 32))


def test_short_hs256_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenKeys.from_settings(ApiSettings(jwt_secret=SecretStr("short")))
    with pytest.raises(ValueError):
        TokenKeys.from_settings(ApiSettings())


def test_hs256_round_trip_and_failures() -> None:
    api = hs()
    keys = TokenKeys.from_settings(api)
    who = verify_token(mint_token(keys, api, "alice", now=NOW), keys, api)
    assert who.user_id == "alice" and who.token_id.startswith("alice:")
    expired = mint_token(keys, api, "alice", now=NOW - timedelta(days=2), ttl=timedelta(hours=1))
    with pytest.raises(AuthError, match="expired"):
        verify_token(expired, keys, api)
    other_aud = mint_token(keys, api.model_copy(update={"jwt_audience": "x"}), "alice", now=NOW)
    with pytest.raises(AuthError, match="audience"):
        verify_token(other_aud, keys, api)
    with_iss = api.model_copy(update={"jwt_issuer": "https://idp"})
    with pytest.raises(AuthError):
        verify_token(mint_token(keys, api, "alice", now=NOW), keys, with_iss)  # iss required, absent
    assert verify_token(mint_token(keys, with_iss, "bob", now=NOW), keys, with_iss).user_id == "bob"


def test_the_tenant_claim_scopes_the_principal() -> None:
    api = hs()
    keys = TokenKeys.from_settings(api)
    assert verify_token(mint_token(keys, api, "alice", now=NOW), keys, api).tenant == ""  # the default
    who = verify_token(mint_token(keys, api, "alice", now=NOW, tenant="acme"), keys, api)
    assert who.user_id == "alice" and who.tenant == "acme" and who.token_id.startswith("acme/alice:")
    now = datetime.now(UTC)  # not the module's NOW: collected long before it runs in a full suite
    # 0, false, [], {}, null are no tenant either: refused like 42, not read as the default tenant
    bads: tuple[object, ...] = (42, 0, False, [], {}, None, ["acme"], "t" * 201)
    for bad in bads:
        token = jwt.encode(
            {
                "sub": "alice",
                "aud": api.jwt_audience,
                "iat": int(now.timestamp()),
                "exp": int(now.timestamp()) + 60,
                "tenant": bad,
            },
            "s" * 32,
            algorithm="HS256",
        )
        with pytest.raises(AuthError, match="tenant"):
            verify_token(token, keys, api)


def test_eddsa_verifies_with_the_public_key_only_and_refuses_hs256() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signer = ApiSettings(jwt_algorithm="EdDSA", jwt_secret=SecretStr(pem))
    verifier = ApiSettings(jwt_algorithm="EdDSA", jwt_public_key=public)
    token = mint_token(TokenKeys.from_settings(signer), signer, "carla", now=NOW)
    vkeys = TokenKeys.from_settings(verifier)
    assert vkeys.signing_key is None
    assert verify_token(token, vkeys, verifier).user_id == "carla"
    hs_token = mint_token(TokenKeys.from_settings(hs()), hs(), "carla", now=NOW)
    with pytest.raises(AuthError):
        verify_token(hs_token, vkeys, verifier)


def _hs_with_tenants(**tenant_keys: list[str]) -> ApiSettings:
    return ApiSettings(
        jwt_secret=SecretStr("s" * 32),
        jwt_tenant_keys={t: [SecretStr(k) for k in ks] for t, ks in tenant_keys.items()},
    )


def test_a_tenant_with_its_own_key_refuses_tokens_the_install_key_signed() -> None:
    install = hs()
    api = _hs_with_tenants(acme=["a" * 32])
    keys = TokenKeys.from_settings(api)
    forged = mint_token(TokenKeys.from_settings(install), install, "alice", now=NOW, tenant="acme")
    with pytest.raises(AuthError, match="invalid token"):
        verify_token(forged, keys, api)
    own = mint_token(keys, api, "alice", now=NOW, tenant="acme")  # signed with acme's key
    assert verify_token(own, keys, api).tenant == "acme"
    # tenants without keys, and the default tenant, still take the install key's tokens
    assert verify_token(mint_token(keys, api, "bob", now=NOW, tenant="globex"), keys, api).tenant == "globex"
    assert verify_token(mint_token(keys, api, "bob", now=NOW), keys, api).tenant == ""


def test_a_tenants_key_cannot_mint_for_another_tenant() -> None:
    api = _hs_with_tenants(acme=["a" * 32], globex=["g" * 32])
    keys = TokenKeys.from_settings(api)
    acme_only = TokenKeys("HS256", b"a" * 32, b"a" * 32)  # acme's key, used as if it were the install key
    for tenant in ("globex", "initech", ""):  # another tenant with keys, one without, the default
        token = mint_token(acme_only, api, "alice", now=NOW, tenant=tenant)
        with pytest.raises(AuthError):
            verify_token(token, keys, api)


def test_a_tenants_keys_rotate() -> None:
    old, new = "o" * 32, "n" * 32
    api = _hs_with_tenants(acme=[new, old])
    keys = TokenKeys.from_settings(api)
    signed_old = mint_token(TokenKeys("HS256", old.encode(), old.encode()), api, "al", now=NOW, tenant="acme")
    assert verify_token(signed_old, keys, api).user_id == "al"
    expired = mint_token(keys, api, "al", now=NOW - timedelta(days=2), ttl=timedelta(hours=1), tenant="acme")
    with pytest.raises(AuthError, match="expired"):
        verify_token(expired, keys, api)


def test_tenant_keys_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="32"):
        TokenKeys.from_settings(_hs_with_tenants(acme=["short"]))
    with pytest.raises(ValueError, match="empty"):
        TokenKeys.from_settings(_hs_with_tenants(acme=[]))


def test_eddsa_tenant_keys_are_public_keys() -> None:
    def pair() -> tuple[str, str]:
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        pub = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem, pub.decode()

    (install_private, install_public), (acme_private, acme_public) = pair(), pair()
    api = ApiSettings(
        jwt_algorithm="EdDSA",
        jwt_public_key=install_public,
        jwt_tenant_keys={"acme": [SecretStr(acme_public)]},
    )
    keys = TokenKeys.from_settings(api)
    acme_signer = ApiSettings(jwt_algorithm="EdDSA", jwt_secret=SecretStr(acme_private))
    install_signer = ApiSettings(jwt_algorithm="EdDSA", jwt_secret=SecretStr(install_private))
    token = mint_token(TokenKeys.from_settings(acme_signer), acme_signer, "al", now=NOW, tenant="acme")
    assert verify_token(token, keys, api).tenant == "acme"
    forged = mint_token(TokenKeys.from_settings(install_signer), install_signer, "al", now=NOW, tenant="acme")
    with pytest.raises(AuthError):
        verify_token(forged, keys, api)
    with pytest.raises(ValueError, match="private key"):
        mint_token(keys, api, "al", now=NOW, tenant="acme")


def _public_pem() -> str:
    pub = Ed25519PrivateKey.generate().public_key()
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_hs256_keys_that_are_key_material_are_refused_at_start() -> None:
    # A public key taken as an HMAC secret makes anyone who has it a token minter; a PEM passed
    # start-up and then every token was a 401 (PyJWT refuses it only when decoding).
    pem = _public_pem()
    der = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    jwk = '{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'
    for material in (pem, base64.b64encode(der).decode(), base64.urlsafe_b64encode(der).decode(), jwk):
        assert hs256_key_problem(material) is not None, material
        with pytest.raises(ValueError, match="acme"):
            TokenKeys.from_settings(_hs_with_tenants(acme=[material]))
    with pytest.raises(ValueError, match="JWT_SECRET: a PEM"):
        TokenKeys.from_settings(ApiSettings(jwt_secret=SecretStr(pem)))
    assert hs256_key_problem(base64.b64encode(b"k" * 32).decode()) is None  # openssl rand -base64 32
    assert hs256_key_problem("s" * 32) is None


def test_a_tenant_key_shared_with_the_install_or_another_tenant_is_refused() -> None:
    with pytest.raises(ValueError, match="install key"):
        TokenKeys.from_settings(_hs_with_tenants(acme=["s" * 32]))  # the install secret
    with pytest.raises(ValueError, match="'acme'"):
        TokenKeys.from_settings(_hs_with_tenants(acme=["a" * 32], globex=["g" * 32, "a" * 32]))
    TokenKeys.from_settings(_hs_with_tenants(acme=["a" * 32, "a" * 32]))  # listed twice for one: harmless
    pem = _public_pem()
    with pytest.raises(ValueError, match="install key"):
        TokenKeys.from_settings(
            ApiSettings(jwt_algorithm="EdDSA", jwt_public_key=pem, jwt_tenant_keys={"acme": [SecretStr(pem)]})
        )


def test_eddsa_keys_must_be_eddsa_public_keys() -> None:
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    api = ApiSettings(
        jwt_algorithm="EdDSA", jwt_public_key=_public_pem(), jwt_tenant_keys={"acme": [SecretStr(rsa_pem)]}
    )
    with pytest.raises(ValueError, match="Ed25519"):
        TokenKeys.from_settings(api)


def test_rotation_tries_the_next_key_when_one_does_not_fit() -> None:
    # A key PyJWT refuses for this token (InvalidKeyError, not InvalidSignatureError) must not
    # end the rotation: the next key is tried.
    api = _hs_with_tenants(acme=["n" * 32])
    good = TokenKeys.from_settings(api)
    keys = TokenKeys(
        "HS256", good.verify_key, good.signing_key, {"acme": (_public_pem().encode(), b"n" * 32)}
    )
    token = mint_token(good, api, "al", now=NOW, tenant="acme")
    assert verify_token(token, keys, api).tenant == "acme"
