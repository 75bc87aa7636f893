"""The life of one notification as a vertical timeline: pure, from activity-store rows.

event received → classification decisions (suppressed, deferred, with reasons) → per channel the
attempts (provider, response code, time since the previous step of that channel) → outcomes →
receipts → escalations and digests → dead letters; every time relative to the event.

A receipt the fallback consumer dropped as foreign (posted through the API by another user, or the
same user id in another tenant: :func:`~consumers.fallback.decisions.receipt_is_foreign`, counted in
``herald_receipts_foreign_total``) is marked so: the store records every receipt as posted, and
an operator reading "delivered" there would believe the user had it. The owner is the one the
notification's channel outcomes name (their message's user and tenant), as the fallback's is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.fallback.decisions import receipt_is_foreign

__all__ = ["Step", "Timeline", "build_timeline", "relative"]

_DECISIONS = {"suppressed", "deferred", "cancelled"}
_ATTEMPTS = {"sent", "failed_retryable", "failed_permanent"}
_TONE = {
    "sent": "ok",
    "delivered": "ok",
    "read": "ok",
    "opened": "ok",
    "failed_retryable": "warn",
    "escalated": "warn",
    "deferred": "info",
    "suppressed": "muted",
    "failed_permanent": "bad",
    "exhausted": "bad",
    "dead_lettered": "bad",
}


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float  # seconds after the event
    stage: str  # event, decision, attempt, outcome, receipt, escalation, dead_letter
    title: str
    channel: str | None
    tone: str
    facts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Timeline:
    notification_id: str
    event_id: str | None
    event_type: str | None
    user_id: str | None
    tier: str | None
    event_at: datetime | None
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def channels(self) -> list[str]:
        return sorted({s.channel for s in self.steps if s.channel})


def relative(seconds: float) -> str:
    """``+0.4s``, ``+5m 2s``, ``+1h 3m``, ``+2d 4h``."""
    sign = "-" if seconds < 0 else "+"
    s = abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f}s" if s < 10 else f"{sign}{s:.0f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {int(s % 60)}s"
    if s < 86_400:
        return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60)}m"
    return f"{sign}{int(s // 86_400)}d {int(s % 86_400 // 3600)}h"


def _stage(row: Mapping[str, Any]) -> str:
    kind, status = row["kind"], row["status"]
    if kind in ("receipt", "dead_letter"):
        return str(kind)
    if status in _DECISIONS:
        return "decision"
    if status == "escalated":
        return "escalation"
    if status in _ATTEMPTS:
        return "attempt"
    return "outcome"


def _facts(row: Mapping[str, Any], since_previous: float | None) -> tuple[tuple[str, str], ...]:
    facts: list[tuple[str, str]] = []
    for label, column in (
        ("source" if row["kind"] == "receipt" else "provider", "provider"),
        ("response", "error_code"),
        ("reason", "reason"),
        ("recipient", "recipient"),
        ("provider id", "provider_message_id"),
        ("detail", "detail"),
        ("source", "source_topic"),
        ("consumer group", "consumer_group"),
    ):
        if row.get(column):
            facts.append((label, str(row[column])))
    if row.get("not_before") is not None:
        facts.append(("until", row["not_before"].isoformat(timespec="seconds")))
    if (row.get("attempt") or 0) > 1:
        facts.append(("attempt", str(row["attempt"])))
    if row.get("escalated_from"):
        facts.append(("escalated from", str(row["escalated_from"])))
    if since_previous is not None and row["kind"] == "outcome" and row["status"] in _ATTEMPTS:
        facts.append(("after previous step", relative(since_previous)))
    return tuple(facts)


def _title(row: Mapping[str, Any]) -> str:
    status = str(row["status"]).replace("_", " ")
    channel = row.get("channel")
    if row["kind"] == "receipt":
        return f"receipt: {status}" + (f" ({channel})" if channel else "")
    if row["kind"] == "dead_letter":
        return f"dead-lettered: {row.get('reason') or 'unknown'}"
    return f"{channel}: {status}" if channel else status


def _owner(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The user and tenant ("" the default one) of the notification's channel outcomes (a channel
    outcome carries its message); None when there is none yet."""
    for r in rows:
        if r["kind"] == "outcome" and r.get("channel") and r.get("user_id"):
            return str(r["user_id"]), str(r.get("tenant") or "")
    return None


def _foreign(row: Mapping[str, Any], owner: tuple[str, str] | None) -> bool:
    if row["kind"] != "receipt" or owner is None:
        return False
    return receipt_is_foreign(
        str(row.get("provider") or ""),
        str(row.get("user_id") or ""),
        owner[0],
        tenant=row.get("tenant"),
        owner_tenant=owner[1],
    )


def _foreign_step(step: Step, row: Mapping[str, Any]) -> Step:
    who = f"user {row.get('user_id')}" + (
        f" in tenant {row['tenant']!r}" if row.get("tenant") is not None else ""
    )
    facts = (("dropped", f"foreign receipt from {who}, not the notification's: no effect"), *step.facts)
    return Step(step.at_s, step.stage, f"{step.title}, dropped (foreign)", step.channel, "bad", facts)


def build_timeline(notification_id: str, rows: Sequence[Mapping[str, Any]]) -> Timeline:
    """``rows`` oldest first (:meth:`ActivityReader.timeline`); the event's time is the outcomes'
    anchor (their event time), else the first row's."""
    outcomes = [r for r in rows if r["kind"] == "outcome"]
    first = outcomes[0] if outcomes else (rows[0] if rows else None)
    if first is None:
        return Timeline(notification_id, None, None, None, None, None)
    event_at: datetime = first["anchor_at"] if outcomes else first["recorded_at"]
    steps = [
        Step(
            0.0,
            "event",
            f"event received: {first.get('event_type') or '?'}",
            None,
            "info",
            _event_facts(first),
        )
    ]
    owner = _owner(rows)
    last_by_channel: dict[str | None, datetime] = {}
    for r in rows:
        at: datetime = r["recorded_at"]
        previous = last_by_channel.get(r.get("channel"))
        since = (at - previous).total_seconds() if previous is not None else (at - event_at).total_seconds()
        last_by_channel[r.get("channel")] = at
        step = Step(
            (at - event_at).total_seconds(),
            _stage(r),
            _title(r),
            r.get("channel"),
            _TONE.get(str(r["status"]), "info"),
            _facts(r, since),
        )
        steps.append(_foreign_step(step, r) if _foreign(r, owner) else step)
    return Timeline(
        notification_id,
        first.get("event_id"),
        first.get("event_type"),
        first.get("user_id"),
        first.get("tier"),
        event_at,
        tuple(steps),
    )


def _event_facts(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    facts = [(k, str(row[k])) for k in ("event_id", "user_id", "tenant", "tier") if row.get(k)]
    return tuple(facts)
