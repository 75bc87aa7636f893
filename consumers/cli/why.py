"""``herald why <event_id>``: every decision recorded for an event.

Reads the activity store first (``herald run ledger``; :mod:`consumers.cli.why_store`). When the
store is unreachable or has nothing for the event (no ledger runs, or the event is past its
retention), reads herald.outcomes and every dead-letter topic that holds it (an unknown type, a bad
payload) from the beginning, so it answers "why didn't I get it?" without any other store (with
``--user`` it skips decoding outcomes of other notifications).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from consumers.cli.tail import read_topic, read_topics
from consumers.cli.why_store import from_store
from consumers.infra import keys
from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics, dlq
from schemas.models import DeliveryOutcome

__all__ = ["DeadLetter", "explain", "explain_dead_letters", "leading_string", "register"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record of the event found on a dead-letter topic, with the reason the consumer gave."""

    topic: str
    partition: int
    offset: int
    headers: dict[str, str]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("why", help="explain what happened to an event: every outcome recorded for it")
    p.add_argument("event_id")
    p.add_argument("--user", help="the event's user id (faster: skips other notifications)")
    p.add_argument(
        "--tenant",
        default="",
        help="the event's tenant; needs --user (default: the default tenant; without --user every "
        "tenant's notifications of the event id are shown, each line naming its tenant)",
    )
    p.add_argument(
        "--source",
        choices=("auto", "store", "topic"),
        default="auto",
        help="where to read: the activity store, the topics, or the store then the topics (default)",
    )
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
        if o.message is not None and o.message.tenant:
            parts.append(f"tenant={o.message.tenant}")
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


def explain_dead_letters(letters: Iterable[DeadLetter]) -> list[str]:
    """One line per dead-lettered record: where it is, why, and what the consumer said. Pure."""
    lines = []
    for d in letters:
        h = d.headers
        source = h.get("herald-source-topic", "?")
        parts = [
            f"dead-lettered by {h.get('herald-consumer-group', '?')} reading {source}",
            f"reason={h.get('herald-dlq-reason', '?')}",
            f"at {d.topic} partition {d.partition} offset {d.offset}",
        ]
        if h.get("herald-dlq-detail"):
            parts.append(f"({h['herald-dlq-detail']})")
        lines.append("  ".join(parts))
    return lines


def leading_string(value: bytes) -> str | None:
    """The first field of a single-object-encoded record, read as an Avro string without knowing
    the schema (every Herald contract starts with ``event_id``); None if it is not one. Pure."""
    if len(value) < 11 or value[:2] != b"\xc3\x01":
        return None
    pos, shift, raw = 10, 0, 0
    while pos < len(value) and shift < 64:  # zig-zag varint length
        byte = value[pos]
        raw |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            break
    else:
        return None
    length = (raw >> 1) ^ -(raw & 1)
    if length < 0 or pos + length > len(value):
        return None
    try:
        return value[pos : pos + length].decode()
    except UnicodeDecodeError:
        return None


async def _dead_letters(settings: HeraldSettings, event_id: str) -> list[DeadLetter]:
    from schemas.codec import DecodeError, default_codec

    topics = Topics(settings.topic_prefix)
    dlqs = [t for t in topics.all() if t == dlq(t.removesuffix(".dlq"))]
    codec = default_codec()
    found: list[DeadLetter] = []
    async for topic, partition, offset, _, value, headers in read_topics(
        settings.kafka_bootstrap_servers, dlqs
    ):
        if value is None:
            continue
        try:
            _, record = codec.decode_record(value)
            named = record.get("event_id")
        except DecodeError:
            # An unknown schema (a producer on a newer contract, or the byte order of Herald 0.1)
            # or damaged bytes: every contract starts with its event id, so read just that.
            named = leading_string(value)
        if named == event_id:
            hdrs = {k: v.decode(errors="replace") for k, v in headers}
            found.append(DeadLetter(topic, partition, offset, hdrs))
    return found


async def _matching(
    settings: HeraldSettings, event_id: str, user: str | None, tenant: str = ""
) -> list[DeliveryOutcome]:
    from schemas.codec import DecodeError, default_codec

    topic = Topics(settings.topic_prefix).outcomes
    codec = default_codec()
    wanted_key = keys.notification_id(event_id, user, tenant).encode() if user else None
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
    source = getattr(args, "source", "auto")
    user, tenant = args.user, getattr(args, "tenant", "")
    if tenant and not user:
        # Notification ids name the tenant and the user: without the user, the tenant picks nothing.
        print("herald why: --tenant needs --user", file=sys.stderr)
        return 2
    if source != "topic":
        lines = await from_store(settings, args.event_id, user, tenant)
        if lines:
            sys.stdout.write("".join(f"{line}\n" for line in lines))
            return 0
        if source == "store":
            print(f"no activity recorded for event {args.event_id} in the activity store")
            return 1
    found = await _matching(settings, args.event_id, user, tenant)
    letters = await _dead_letters(settings, args.event_id)
    if not found and not letters:
        print(
            f"no outcomes recorded for event {args.event_id} (yet), and no dead-letter topic holds it: "
            "it may still be in flight"
        )
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in [*explain(found), *explain_dead_letters(letters)]))
    return 0
