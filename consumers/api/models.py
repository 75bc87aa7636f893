"""Request and response bodies of the API (they are the OpenAPI schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.models import Channel

__all__ = [
    "Device",
    "DeviceIn",
    "DeviceList",
    "InboxItemOut",
    "InboxPageOut",
    "MarkReadIn",
    "MarkReadOut",
    "PreferenceChange",
    "PreferenceOut",
    "PreferencesIn",
    "PreferencesOut",
    "QuietHours",
    "ReceiptIn",
    "ReceiptOut",
    "UnreadCount",
]

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


class InboxItemOut(BaseModel):
    id: uuid.UUID
    notification_id: str
    type: str
    category: str
    title: str
    body: str | None
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    expires_at: datetime | None


class InboxPageOut(BaseModel):
    items: list[InboxItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class UnreadCount(BaseModel):
    unread: int


class MarkReadIn(_In):
    ids: list[uuid.UUID] = Field(min_length=1, max_length=500, description="Inbox row ids (at most 500).")


class MarkReadOut(BaseModel):
    read: list[uuid.UUID] = Field(description="The rows now read (including those read before).")


class ReceiptIn(_In):
    notification_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    status: Literal["delivered", "opened"]
    channel: Literal["push", "in_app"] = "push"
    at: AwareDatetime | None = Field(None, description="When it happened on the device (default: now).")


class ReceiptOut(BaseModel):
    notification_id: str
    status: str
    published: bool


class PreferenceOut(BaseModel):
    category: str
    channel: Channel
    enabled: bool
    default: bool = Field(description="What `enabled` is when the user never chose.")
    locked: bool = Field(description="Critical categories: always delivered, cannot be turned off.")


class PreferencesOut(BaseModel):
    preferences: list[PreferenceOut]
    digest: bool = Field(
        True, description="Email me a digest of unread notifications (on unless the user turned it off)."
    )


class PreferenceChange(_In):
    category: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")  # no control chars
    channel: Channel
    enabled: bool


class PreferencesIn(_In):
    preferences: list[PreferenceChange] = Field(default_factory=list, max_length=100)
    digest: bool | None = Field(None, description="Turn the email digest on or off; absent: unchanged.")

    @model_validator(mode="after")
    def _something(self) -> PreferencesIn:
        if not self.preferences and self.digest is None:
            raise ValueError("nothing to change: give preferences, digest or both")
        return self


class QuietHours(_In):
    timezone: str = Field(
        "UTC",
        min_length=1,
        max_length=64,
        description="IANA zone, e.g. Europe/Lisbon.",
        examples=["Europe/Lisbon"],
    )
    start: str | None = Field(
        None,
        pattern=_HHMM,
        description="Local HH:MM the quiet window begins; null: none.",
        examples=["22:00"],
    )
    end: str | None = Field(
        None, pattern=_HHMM, description="Local HH:MM it ends (may cross midnight).", examples=["07:00"]
    )


class DeviceIn(_In):
    token: str = Field(
        min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$", description="The FCM registration token."
    )
    platform: Literal["android", "ios", "web"] = "android"


class Device(BaseModel):
    token: str
    platform: str


class DeviceList(BaseModel):
    devices: list[Device]
