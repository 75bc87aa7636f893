"""``herald why <event_id>``: every decision recorded for an event, from herald.outcomes.

Reads the outcomes topic from the beginning, so it answers "why didn't I get it?" without any
other store (with ``--user`` it skips decoding records of other notifications).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from datetime import datetime

from consumers.cli.tail import read_topic
from consumers.infra import keys
from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.codec import DecodeError, default_codec
from schemas.models import DeliveryOutcome

__all__ = ["explain", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("why", help="explain what happened to an event: every outcome recorded for it")
    p.add_argument("event_id")
    p.add_argument("--user", help="the event's user id (faster: skips other notifications)")
    p.set_defaults(func=why)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def explain(outcomes: Iterable[DeliveryOutcome]) -> list[str]:
    """One line per outcome, in the order recorded."""
    lines = []
    for o in outcomes:
        parts = [
            _when(o.recorded_at),
            o.status.value,
            o.channel.value if o.channel else "-",
            o.tier.value,
            f"user={o.user_id}",
        ]
        if o.reason:
            parts.append(f"reason={o.reason}")
        if o.not_before is not None:
            parts.append(f"until={_when(o.not_before)}")
        if o.attempt > 1:
            parts.append(f"attempt={o.attempt}")
        if o.provider:
            parts.append(f"provider={o.provider}")
        if o.error_code:
            parts.append(f"error={o.error_code}")
        if o.detail:
            parts.append(f"({o.detail})")
        lines.append("  ".join(parts))
    return lines


async def _matching(settings: HeraldSettings, event_id: str, user: str | None) -> list[DeliveryOutcome]:
    topic = Topics(settings.topic_prefix).outcomes
    codec = default_codec()
    wanted_key = keys.notification_id(event_id, user).encode() if user else None
    found: list[DeliveryOutcome] = []
    async for _, _, key, value, _ in read_topic(settings.kafka_bootstrap_servers, topic):
        if wanted_key is not None and key != wanted_key:
            continue
        if value is None:
            continue
        try:
            outcome = codec.decode(value, DeliveryOutcome)
        except DecodeError:
            continue
        if outcome.event_id == event_id:
            found.append(outcome)
    return found


async def why(settings: HeraldSettings, args: argparse.Namespace) -> int:
    found = await _matching(settings, args.event_id, args.user)
    if not found:
        print(
            f"no outcomes recorded for event {args.event_id} (yet): it may still be in flight, or was sent "
            "without any suppression or deferral being recorded"
        )
        return 1
    sys.stdout.write("\n".join(explain(found)) + "\n")
    return 0
