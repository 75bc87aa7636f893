"""Recipients' custom properties (``herald_recipients.properties``) for the templates.

The channel consumers read them at render time, one query per batch and only for messages
whose templates use ``recipient`` (:meth:`channels.templates.TemplateRenderer.uses_recipient`),
so a template sees the properties as they are when it renders (a retry hours later sees that
day's), and templates that do not use them cost nothing. An id PostgreSQL refuses (a NUL, a lone
surrogate) is the message's fault: a :class:`~schemas.errors.RecordError` (``invalid_recipient``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from consumers.infra.db import DatabaseUnavailable
from schemas.errors import RecordError

__all__ = ["RecipientKey", "RecipientProperties"]

RecipientKey = tuple[str, str]  # (tenant, user_id); '' is the default tenant


class RecipientProperties:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get_many(self, keys: Iterable[RecipientKey]) -> dict[RecipientKey, dict[str, Any]]:
        """The properties of each known (tenant, user); an unknown one is absent from the answer."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        try:
            rows = await self.pool.fetch(
                "SELECT r.tenant, r.user_id, r.properties::text AS properties "
                "FROM unnest($1::text[], $2::text[]) AS u(tenant, id) "
                "JOIN herald_recipients r ON r.tenant = u.tenant AND r.user_id = u.id",
                [t for t, _ in unique],
                [u for _, u in unique],
            )
        except PG_CALL_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # a user or tenant id PostgreSQL cannot even compare
                raise RecordError(
                    f"recipient properties lookup refused: {type(exc).__name__}: {exc}",
                    reason="invalid_recipient",
                ) from exc
            # Rendering without them would send blanks where the template expects a value: wait.
            raise DatabaseUnavailable(f"recipient properties unavailable: {exc}") from exc
        return {(r["tenant"], r["user_id"]): json.loads(r["properties"]) for r in rows}
