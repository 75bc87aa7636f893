"""Many recipients at once: ``POST /v1/recipients:batch`` and ``herald recipients import``.

:func:`parse_row` is pure (one row of JSON → a recipient or the reasons it is refused);
:func:`put_many` writes a batch in three set-based statements (recipients, then their
preferences replaced), so an import runs at thousands of rows a second instead of one round
trip per row. Every row is written in the caller's tenant (the same id in another tenant is
another recipient).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import ValidationError

from consumers.api.admin.recipient_models import RecipientIn, check_new_id

__all__ = ["BatchRow", "RowError", "RowResult", "parse_row", "put_many"]


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    recipient: RecipientIn


@dataclass(frozen=True, slots=True)
class RowError:
    loc: str
    msg: str


@dataclass(frozen=True, slots=True)
class RowResult:
    id: str
    status: str  # created | updated


def parse_row(raw: Any, max_properties_bytes: int) -> BatchRow | list[RowError]:
    """One row: an object with ``id`` and the fields of PUT /v1/recipients/{id}."""
    if not isinstance(raw, dict):
        return [RowError("", "a row must be a JSON object")]
    fields = dict(raw)
    ident = fields.pop("id", None)
    if not isinstance(ident, str):
        return [RowError("id", "id is required (a string)")]
    why = check_new_id(ident)
    if why is not None:
        return [RowError("id", why)]
    try:
        recipient = RecipientIn.model_validate(fields)
    except ValidationError as exc:
        return [RowError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    if len(json.dumps(recipient.properties).encode()) > max_properties_bytes:
        return [RowError("properties", f"properties over {max_properties_bytes} bytes of JSON")]
    return BatchRow(ident, recipient)


_UPSERT_MANY = """
INSERT INTO herald_recipients AS r (user_id, tenant, email, phone, locale, timezone, quiet_start, quiet_end,
                                    properties)
SELECT u.id, $1, u.email, u.phone, u.locale, u.tz, u.qs, u.qe, u.props::jsonb
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::time[], $8::time[], $9::text[])
     AS u(id, email, phone, locale, tz, qs, qe, props)
ON CONFLICT (tenant, user_id) DO UPDATE SET email = EXCLUDED.email, phone = EXCLUDED.phone, locale = EXCLUDED.locale,
    timezone = EXCLUDED.timezone, quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
    properties = EXCLUDED.properties, updated_at = now()
RETURNING user_id, xmax = 0 AS created
"""


async def put_many(conn: asyncpg.Connection, tenant: str, rows: Sequence[BatchRow]) -> list[RowResult]:
    """Create or replace every row in one transaction; a later row with the same id wins."""
    latest = {row.id: row for row in rows}  # ON CONFLICT cannot touch one row twice in a statement
    batch = list(latest.values())
    async with conn.transaction():
        written = {
            r["user_id"]: bool(r["created"])
            for r in await conn.fetch(
                _UPSERT_MANY,
                tenant,
                [b.id for b in batch],
                [b.recipient.email for b in batch],
                [b.recipient.phone for b in batch],
                [b.recipient.locale for b in batch],
                [b.recipient.timezone for b in batch],
                [b.recipient.quiet_hours.start if b.recipient.quiet_hours else None for b in batch],
                [b.recipient.quiet_hours.end if b.recipient.quiet_hours else None for b in batch],
                [json.dumps(b.recipient.properties) for b in batch],
            )
        }
        ids = list(written)
        await conn.execute(
            "DELETE FROM herald_preferences WHERE tenant = $1 AND user_id = ANY($2::text[])", tenant, ids
        )
        prefs = [(b.id, p) for b in batch if b.id in written for p in b.recipient.preferences]
        if prefs:
            await conn.execute(
                "INSERT INTO herald_preferences (tenant, user_id, category, channel, enabled) "
                "SELECT $5, * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) "
                "ON CONFLICT (tenant, user_id, category, channel) DO UPDATE SET enabled = EXCLUDED.enabled",
                [uid for uid, _ in prefs],
                [p.category for _, p in prefs],
                [p.channel.value for _, p in prefs],
                [p.enabled for _, p in prefs],
                tenant,
            )
    return [RowResult(b.id, "created" if written[b.id] else "updated") for b in rows]
