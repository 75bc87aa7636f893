"""Recipient validation: E.164 phones, IANA zones, ids."""

from __future__ import annotations

import pytest

from consumers.api.admin.recipient_models import check_id, check_new_id, e164, iana_zone


@pytest.mark.parametrize(
    ("raw", "out"),
    [
        ("+351 912 345 678", "+351912345678"),
        ("+14155550101", "+14155550101"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_valid_phones_become_e164(raw: str, out: str) -> None:
    assert e164(raw) == out


@pytest.mark.parametrize("raw", ["912345678", "+1 555 0100", "+999 123", "+", "+351 91", "phone"])
def test_invalid_phones_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        e164(raw)


def test_zones_are_iana_names_only() -> None:
    assert iana_zone("America/Sao_Paulo") == "America/Sao_Paulo"
    for bad in ("UTC+3", "+03:00", "Mars/Olympus", ""):
        with pytest.raises(ValueError):
            iana_zone(bad)


@pytest.mark.parametrize(
    ("ident", "ok"), [("u-1", True), ("", False), ("  ", False), ("a\nb", False), ("x" * 201, False)]
)
def test_ids(ident: str, ok: bool) -> None:
    assert (check_id(ident) is None) is ok


@pytest.mark.parametrize(("ident", "ok"), [("u-1", True), ("org/123", False), ("/", False), ("", False)])
def test_new_ids_take_no_slash(ident: str, ok: bool) -> None:
    assert (check_new_id(ident) is None) is ok
    if "/" in ident:
        assert check_id(ident) is None  # still addressable once stored
