"""The ``in_app`` channel: a row in the user's inbox. ``sent`` means the row is there.

PostgreSQL refusing the row's values (a NUL, a huge id) is ``failed_permanent invalid_content``;
PostgreSQL not answering is ``failed_retryable database_unavailable``
(:func:`~channels.storage_errors.classify_pg_error`).
"""

from __future__ import annotations

import uuid
from typing import Any

from channels.base import Content, Outcome
from channels.in_app.inbox_pg import InboxService
from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from schemas.models import Channel, ChannelMessage

__all__ = ["InAppAdapter"]

PROVIDER = "inbox"
TITLE_MAX = 255  # an inbox title is one line in a list: longer ones are cut, never refused


class InAppAdapter:
    channel = Channel.IN_APP
    provider = PROVIDER

    def __init__(self, inbox: InboxService) -> None:
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
        try:
            row_id, created = await self._create(message, content, title, data, idempotency_key)
        except PG_CALL_ERRORS as exc:
            detail = f"{type(exc).__name__}: {exc}"[:500]
            if classify_pg_error(exc) == "record":  # NUL or a lone surrogate in the text, a huge id
                return Outcome("failed_permanent", PROVIDER, reason="invalid_content", detail=detail)
            return Outcome("failed_retryable", PROVIDER, reason="database_unavailable", detail=detail)
        return Outcome.sent(PROVIDER, str(row_id), detail=None if created else "already in the inbox")

    async def _create(
        self, message: ChannelMessage, content: Content, title: str, data: dict[str, Any], key: str
    ) -> tuple[uuid.UUID, bool]:
        return await self._inbox.create(
            user_id=message.recipient,
            notification_id=message.notification_id,
            type_=message.event_type,
            category=message.category,
            title=title[:TITLE_MAX],
            body=content.text,
            idempotency_key=key,
            data=data,
            expires_at=message.expires_at,
            tenant=message.tenant or "",
        )

    async def close(self) -> None:
        return None
