"""``herald why`` from the activity store: every outcome, receipt and dead letter of an event's
notifications in one indexed query (``herald run ledger`` writes them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from consumers.infra import keys
from consumers.infra.settings import HeraldSettings

__all__ = ["explain_rows", "from_store"]


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def explain_rows(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per activity-store row (outcomes, receipts, dead letters), oldest first, naming a
    tenant other than the default one (two tenants may use one event id). A row without its own
    (a receipt, an outcome without a message) takes its notification's. Pure."""
    rows = list(rows)
    tenants = {r["notification_id"]: r["tenant"] for r in rows if r.get("tenant") and r["notification_id"]}
    lines = []
    for r in rows:
        if r["kind"] == "dead_letter":
            lines.append(_dead_letter(r))
            continue
        parts = [_when(r["recorded_at"]), r["status"], r["channel"] or "-", r["tier"] or r["kind"]]
        if r["user_id"]:
            parts.append(f"user={r['user_id']}")
        if tenant := r.get("tenant") or tenants.get(r["notification_id"]):
            parts.append(f"tenant={tenant}")
        for label, column in (("reason", "reason"), ("until", "not_before"), ("provider", "provider")):
            if r[column]:
                parts.append(f"{label}={_when(r[column]) if column == 'not_before' else r[column]}")
        if r["attempt"] > 1:
            parts.append(f"attempt={r['attempt']}")
        if r["error_code"]:
            parts.append(f"error={r['error_code']}")
        if r["detail"]:
            parts.append(f"({r['detail']})")
        lines.append("  ".join(parts))
    return lines


def _dead_letter(r: Mapping[str, Any]) -> str:
    """As ``herald why`` words a dead letter it finds on a topic."""
    parts = [
        f"dead-lettered by {r['consumer_group'] or '?'} reading {r['source_topic'] or '?'}",
        f"reason={r['reason']}",
        f"at {r['topic']} partition {r['kafka_partition']} offset {r['kafka_offset']}",
    ]
    if r["detail"]:
        parts.append(f"({r['detail']})")
    return "  ".join(parts)


async def from_store(
    settings: HeraldSettings, event_id: str, user: str | None = None, tenant: str = ""
) -> list[str] | None:
    """The store's lines for the event (with ``user``: its notification for that user in
    ``tenant`` only); None when the store is unreachable or not migrated."""
    import asyncpg

    from consumers.infra.db import DatabaseUnavailable, connect_pool
    from consumers.ledger.queries import ActivityReader

    try:
        pool = await connect_pool(settings.database_url, max_size=1)
    except DatabaseUnavailable:
        return None
    try:
        nid = keys.notification_id(event_id, user, tenant) if user else None
        return explain_rows(await ActivityReader(pool).for_event(event_id, nid, user))
    except (DatabaseUnavailable, asyncpg.UndefinedTableError):
        return None
    finally:
        await pool.close()
