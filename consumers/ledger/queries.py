"""Reading the activity store: the history of one notification or event, searches, dead-letter
counts, per-provider health and recent rates. What the console, ``herald why`` and ``herald dlq`` ask."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from consumers.infra.db import DatabaseUnavailable
from consumers.ledger.store import OUTAGES

__all__ = ["TIMELINE_OTHERS", "TIMELINE_RECEIPTS", "ActivityReader", "Search", "cut_timeline"]

# A notification's timeline reads at most this many receipts (anyone with an end-user token can
# post receipts for any notification id: unbounded) and this many other rows (Herald's own
# outcomes and dead letters: a few dozen at most), the earliest of each; the other rows are looked
# for among the notification's first TIMELINE_SCAN rows (the index has no kind: without a bound,
# a flood of receipts would be read whole to find the outcomes after it).
TIMELINE_RECEIPTS = 100
TIMELINE_OTHERS = 500
TIMELINE_SCAN = 20_000

_ROW = (
    "kind, status, attempt, anchor_at, recorded_at, event_id, notification_id, user_id, tenant, "
    "event_type, tier, channel, lane, recipient, provider, provider_message_id, reason, detail, "
    "error_code, not_before, escalated_from, topic, kafka_partition, kafka_offset, source_topic, consumer_group"
)


@dataclass(frozen=True, slots=True)
class Search:
    """Console search filters; every one given must match (exact matches, time range on recorded_at)."""

    event_id: str | None = None
    notification_id: str | None = None
    user_id: str | None = None
    recipient: str | None = None  # email or phone, exact
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("event_id", "notification_id", "user_id", "recipient", "status"):
            value = getattr(self, column)
            if value:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if self.since is not None:
            args.append(self.since)
            clauses.append(f"recorded_at >= ${len(args)}")
        if self.until is not None:
            args.append(self.until)
            clauses.append(f"recorded_at < ${len(args)}")
        return (" AND ".join(clauses) or "TRUE"), args

    @property
    def empty(self) -> bool:
        return not any(
            (self.event_id, self.notification_id, self.user_id, self.recipient, self.status, self.since)
        )


class ActivityReader:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        try:
            async with self.pool.acquire() as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]
        except OUTAGES as exc:
            raise DatabaseUnavailable(f"activity store: {type(exc).__name__}: {exc}") from exc

    async def timeline(
        self, notification_id: str, *, receipts: int = TIMELINE_RECEIPTS, others: int = TIMELINE_OTHERS
    ) -> tuple[list[dict[str, Any]], bool]:
        """The rows of one notification (outcomes, receipts, dead letters), oldest first, at most
        ``receipts`` receipts and ``others`` other rows (the earliest; those among the first
        TIMELINE_SCAN rows); and whether more were left out. One more of each is read, to tell."""
        rows = await self._fetch(
            f"SELECT * FROM ((SELECT * FROM (SELECT {_ROW} FROM herald_activity WHERE notification_id = $1 "
            "ORDER BY recorded_at, attempt LIMIT $4) AS w WHERE kind <> 'receipt' LIMIT $2) "
            f"UNION ALL (SELECT {_ROW} FROM herald_activity WHERE notification_id = $1 "
            "AND kind = 'receipt' ORDER BY recorded_at, attempt LIMIT $3)) AS r ORDER BY recorded_at, attempt",
            notification_id,
            others + 1,
            receipts + 1,
            TIMELINE_SCAN,
        )
        return cut_timeline(rows, receipts=receipts, others=others)

    async def for_event(
        self, event_id: str, notification_id: str | None = None, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every row of an event (all its notifications, in every tenant: tenants choose their
        event ids), oldest first; receipts join by notification. With ``notification_id`` (the
        event's for one user in one tenant) only that notification's rows and the event's dead
        letters that name no notification and no other user."""
        if notification_id is not None:
            return await self._fetch(
                f"SELECT {_ROW} FROM herald_activity WHERE notification_id = $2 OR (event_id = $1 "
                "AND notification_id IS NULL AND (user_id IS NULL OR user_id = $3)) "
                "ORDER BY recorded_at, attempt",
                event_id,
                notification_id,
                user_id,
            )
        return await self._fetch(
            f"SELECT {_ROW} FROM herald_activity WHERE event_id = $1 OR notification_id IN "
            "(SELECT DISTINCT notification_id FROM herald_activity WHERE event_id = $1) "
            "ORDER BY recorded_at, attempt",
            event_id,
        )

    async def search(self, q: Search) -> list[dict[str, Any]]:
        """Notifications matching ``q``, newest first: one line each with its latest status."""
        where, args = q.where()
        args.append(max(1, min(q.limit, 500)))
        return await self._fetch(
            "SELECT DISTINCT ON (notification_id) notification_id, event_id, user_id, event_type, tier, "
            "status, channel, reason, recorded_at, kind FROM ("
            f"  SELECT * FROM herald_activity WHERE {where} AND notification_id IS NOT NULL "
            f"  ORDER BY recorded_at DESC LIMIT ${len(args)} * 8) AS recent "
            "ORDER BY notification_id, recorded_at DESC",
            *args,
        )

    async def dead_letter_counts(self, prefix: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Per .dlq topic of the Herald under ``prefix`` and reason: how many, and the last one's time."""
        return await self._fetch(
            "SELECT topic, reason, count(*) AS records, max(recorded_at) AS last_at "
            "FROM herald_activity WHERE kind = 'dead_letter' AND starts_with(topic, $1) "
            "AND ($2::timestamptz IS NULL OR recorded_at >= $2) "
            "GROUP BY topic, reason ORDER BY topic, records DESC",
            f"{prefix}.",
            since,
        )

    async def dead_letters(self, topic: str, reason: str | None, limit: int = 100) -> list[dict[str, Any]]:
        return await self._fetch(
            f"SELECT {_ROW} FROM herald_activity WHERE kind = 'dead_letter' AND topic = $1 "
            "AND ($2::text IS NULL OR reason = $2) ORDER BY recorded_at DESC LIMIT $3",
            topic,
            reason,
            limit,
        )

    async def providers(self, since: datetime) -> list[dict[str, Any]]:
        """Per channel × provider since ``since``: attempts, successes, failures, last error."""
        return await self._fetch(
            "SELECT channel, provider, count(*) AS attempts, "
            "count(*) FILTER (WHERE status = 'sent') AS sent, "
            "count(*) FILTER (WHERE status IN ('failed_retryable', 'failed_permanent')) AS failed, "
            "(array_agg(coalesce(error_code, reason) ORDER BY recorded_at DESC) "
            "   FILTER (WHERE status IN ('failed_retryable', 'failed_permanent')))[1:3] AS last_errors, "
            "max(recorded_at) FILTER (WHERE status IN ('failed_retryable', 'failed_permanent')) AS last_error_at "
            "FROM herald_activity WHERE kind = 'outcome' AND recorded_at >= $1 AND provider IS NOT NULL "
            "AND status IN ('sent', 'failed_retryable', 'failed_permanent') "
            "GROUP BY channel, provider ORDER BY channel, provider",
            since,
        )

    async def rates(self, since: datetime, bucket_s: int = 60) -> list[dict[str, Any]]:
        """Outcomes per time bucket × channel × status since ``since`` (the live page's series)."""
        return await self._fetch(
            "SELECT to_timestamp(floor(extract(epoch FROM recorded_at) / $2) * $2) AS bucket, "
            "coalesce(channel, '-') AS channel, status, count(*) AS n FROM herald_activity "
            "WHERE recorded_at >= $1 AND kind <> 'dead_letter' GROUP BY 1, 2, 3 ORDER BY 1",
            since,
            bucket_s,
        )


def cut_timeline(
    rows: list[dict[str, Any]], *, receipts: int, others: int
) -> tuple[list[dict[str, Any]], bool]:
    """``rows`` (oldest first) without the receipts past the first ``receipts`` and the other rows
    past the first ``others``; and whether any were left out. Pure."""
    kept: list[dict[str, Any]] = []
    seen = {True: 0, False: 0}
    for row in rows:
        receipt = row["kind"] == "receipt"
        seen[receipt] += 1
        if seen[receipt] <= (receipts if receipt else others):
            kept.append(row)
    return kept, len(kept) < len(rows)
