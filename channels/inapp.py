"""The ``in_app`` channel: a row in the user's inbox. ``sent`` means the row is there."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from channels.base import Content, Outcome
from schemas.models import Channel, ChannelMessage

__all__ = ["InAppAdapter", "InboxWriter"]

PROVIDER = "inbox"
TITLE_MAX = 255  # an inbox title is one line in a list: longer ones are cut, never refused


class InboxWriter(Protocol):
    async def create(
        self,
        *,
        user_id: str,
        notification_id: str,
        type_: str,
        category: str,
        title: str,
        body: str | None,
        idempotency_key: str,
        data: dict[str, Any] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[Any, bool]: ...


class InAppAdapter:
    channel = Channel.IN_APP
    provider = PROVIDER

    def __init__(self, inbox: InboxWriter) -> None:
        self._inbox = inbox

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        title = (content.title or "").strip()
        if not title:
            return Outcome(
                "failed_permanent",
                PROVIDER,
                reason="empty_title",
                detail="the in_app.title template rendered nothing",
            )
        try:
            data = message.data()
        except ValueError as exc:
            return Outcome("failed_permanent", PROVIDER, reason="invalid_payload", detail=str(exc))
        row_id, created = await self._inbox.create(
            user_id=message.recipient,
            notification_id=message.notification_id,
            type_=message.event_type,
            category=message.category,
            title=title[:TITLE_MAX],
            body=content.text,
            idempotency_key=idempotency_key,
            data=data,
            expires_at=message.expires_at,
        )
        return Outcome.sent(PROVIDER, str(row_id), detail=None if created else "already in the inbox")

    async def close(self) -> None:
        return None
