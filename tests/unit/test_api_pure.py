"""Pure parts of the API: preference slots/view/refusals from the routing table, token checks
(HS256 and EdDSA), list cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from consumers.api.auth import AuthError, TokenKeys, mint_token, verify_token
from consumers.api.inbox_query import InboxRow, Section, decode_list_cursor, encode_list_cursor
from consumers.api.preferences import preference_slots, preference_view, reject_changes
from consumers.classifier.routing import load_routing
from consumers.infra.settings import ApiSettings, ClassifierSettings
from schemas.models import Channel

SLOTS = preference_slots(load_routing(ClassifierSettings().routing_file))
NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("category", "channel", "default", "locked"),
    [
        ("security", Channel.PUSH, True, True),
        ("security", Channel.SMS, True, True),
        ("security", Channel.EMAIL, True, True),
        ("payments", Channel.PUSH, True, False),
        ("payments", Channel.EMAIL, True, False),  # the fallback channel
        ("activity", Channel.IN_APP, True, False),
        ("activity", Channel.PUSH, False, False),  # opt-in
        ("marketing", Channel.EMAIL, True, False),
    ],
)
def test_slots_follow_the_routing_table(category: str, channel: Channel, default: bool, locked: bool) -> None:
    slot = SLOTS[(category, channel)]
    assert (slot.default, slot.locked) == (default, locked)


def test_system_and_unrouted_pairs_are_not_preferences() -> None:
    assert not any(c == "system" for c, _ in SLOTS)
    assert ("marketing", Channel.SMS) not in SLOTS


def test_view_applies_stored_choices_but_never_unlocks_critical() -> None:
    stored = {
        ("security", Channel.SMS): False,
        ("activity", Channel.PUSH): True,
        ("tips", Channel.EMAIL): False,
    }
    view = {(e.category, e.channel): e.enabled for e in preference_view(SLOTS, stored)}
    assert view[("security", Channel.SMS)] is True
    assert view[("activity", Channel.PUSH)] is True
    assert view[("tips", Channel.EMAIL)] is False
    assert view[("payments", Channel.PUSH)] is True


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (("security", Channel.PUSH, False), "locked"),
        (("security", Channel.PUSH, True), None),
        (("nope", Channel.EMAIL, True), "unknown_category"),
        (("tips", Channel.PUSH, True), "unknown_channel"),
        (("activity", Channel.PUSH, True), None),
    ],
)
def test_refusals(change: tuple[str, Channel, bool], kind: str | None) -> None:
    errors = reject_changes(SLOTS, [change])
    assert [e[1] for e in errors] == ([kind] if kind else [])


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


def test_list_cursor_round_trip_and_garbage() -> None:
    row = InboxRow(
        id=uuid.uuid4(),
        notification_id="n",
        type="t",
        category="c",
        title="title",
        body=None,
        data={},
        created_at=NOW,
        expires_at=None,
        read_at=None,
    )
    sections: tuple[Section, ...] = ("u", "r")
    for section in sections:
        assert decode_list_cursor(encode_list_cursor(section, row)) == (section, NOW, row.id)
    for bad in ["", "x", "u.", "q.abc", "u.!!!", "u." + "A" * 40]:
        with pytest.raises(ValueError):
            decode_list_cursor(bad)
