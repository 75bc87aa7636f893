"""A recipient as the admin API reads and writes it, validated before anything is stored.

Phones must be valid E.164 numbers (``phonenumbers``: the number plan, not only the shape) and are
stored in E.164 form; time zones must be IANA names known to this Python (``zoneinfo``), never
offsets; custom properties are a JSON object whose size a setting bounds (checked by the routes).
"""

from __future__ import annotations

import re
from datetime import datetime, time
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import available_timezones

import phonenumbers
from pydantic import AfterValidator, BaseModel, Field

from schemas.models import Channel

__all__ = [
    "MAX_ID_LEN",
    "ErasureOut",
    "PreferenceIn",
    "QuietHoursIn",
    "RecipientIn",
    "RecipientOut",
    "RecipientPatch",
    "check_id",
    "check_new_id",
    "e164",
    "iana_zone",
]

MAX_ID_LEN = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(value: str) -> str | None:
    """Why a recipient/topic id is unacceptable, or None when it is fine."""
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_ID_LEN:
        return f"longer than {MAX_ID_LEN} characters"
    if _CONTROL.search(value):
        return "contains a control character"
    return None


def check_new_id(value: str) -> str | None:
    """Why a recipient id may not be created, or None: :func:`check_id`, and no ``/``.

    An id is a path segment (``/v1/recipients/{id}``); a ``/`` in one only travels as ``%2F``,
    which proxies decode, refuse or pass on as they please. Ids stored before this check stay
    addressable: the recipient routes take the rest of the path as the id, so one can still be
    read, patched and erased (``DELETE /v1/recipients/org/123``). Topic routes use
    :func:`check_id` alone: their key is one path segment, so a key with ``/`` never reaches them."""
    why = check_id(value)
    if why is None and "/" in value:
        return "must not contain '/' (an id is one URL path segment)"
    return why


def e164(value: str) -> str:
    """``value`` as an E.164 number; ValueError when it is not a valid international number."""
    if not value.startswith("+"):
        raise ValueError("phone must be in E.164 form, starting with + and the country code")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def iana_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError("not an IANA time zone name (e.g. Europe/Lisbon); offsets are not accepted")
    return value


Phone = Annotated[str, AfterValidator(e164)]
Zone = Annotated[str, AfterValidator(iana_zone)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Locale = Annotated[str, Field(max_length=35, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")]


class QuietHoursIn(BaseModel, extra="forbid"):
    start: time = Field(description="Local wall-clock start, e.g. 22:00.")
    end: time = Field(description="Local wall-clock end, e.g. 07:00 (may wrap past midnight).")


class PreferenceIn(BaseModel, extra="forbid"):
    category: str = Field(min_length=1, max_length=64)
    channel: Channel
    enabled: bool


class RecipientIn(BaseModel, extra="forbid"):
    """PUT: the whole recipient; an absent field takes its default."""

    email: Email | None = None
    phone: Phone | None = Field(None, description="E.164, e.g. +351912345678.")
    locale: Locale = "en"
    timezone: Zone = "UTC"
    quiet_hours: QuietHoursIn | None = None
    preferences: list[PreferenceIn] = Field(default_factory=list, max_length=500)
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Custom properties (JSON object), template variables."
    )


class RecipientPatch(BaseModel, extra="forbid"):
    """PATCH: only the fields present change; ``properties`` merge (a null value removes a key);
    ``preferences`` are upserted one by one."""

    email: Email | None = None
    phone: Phone | None = None
    locale: Locale | None = None
    timezone: Zone | None = None
    quiet_hours: QuietHoursIn | None = None
    preferences: list[PreferenceIn] | None = Field(None, max_length=500)
    properties: dict[str, Any] | None = None


class RecipientOut(BaseModel):
    id: str
    tenant: str
    email: str | None
    phone: str | None
    locale: str
    timezone: str
    quiet_hours: QuietHoursIn | None
    preferences: list[PreferenceIn]
    properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ErasureOut(BaseModel):
    id: str
    removed: dict[str, int] = Field(description="Rows removed per kind: recipient, devices, preferences, ...")
