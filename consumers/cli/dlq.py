"""``herald dlq list/show/replay``: dead letters per topic and reason, one in full, and replays back to
the source topic with an audit record (who, what, when) in PostgreSQL."""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import datetime

from consumers.cli.tail import resolve_topic
from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dlq", help="dead letters: counts by reason, inspect one, replay to the source topic")
    dsub = p.add_subparsers(dest="dlq_cmd", required=True)

    ls = dsub.add_parser("list", help="per dead-letter topic: records by reason (from the activity store)")
    ls.set_defaults(func=list_dlq)

    sh = dsub.add_parser("show", help="one dead letter: headers, decoded body (hex when not decodable)")
    sh.add_argument("topic", help="the .dlq topic, full or short (events.dlq)")
    sh.add_argument("partition", type=int)
    sh.add_argument("offset", type=int)
    sh.set_defaults(func=show_one)

    rp = dsub.add_parser("replay", help="produce dead letters back to their source topic (audited)")
    rp.add_argument("topic", help="the .dlq topic, full or short (events.dlq)")
    rp.add_argument("--at", help="one record: PARTITION:OFFSET")
    rp.add_argument("--reason", help="every record with this reason")
    rp.add_argument("--all", action="store_true", help="every record of the topic")
    rp.add_argument("--actor", help="who replays, for the audit record (default: cli:<login name>)")
    rp.set_defaults(func=replay_cmd)

    au = dsub.add_parser("audit", help="the latest replays: who, what, when")
    au.set_defaults(func=audit)


async def list_dlq(settings: HeraldSettings, _: argparse.Namespace) -> int:
    from consumers.infra.db import connect_pool, migrate
    from consumers.ledger.queries import ActivityReader

    pool = await connect_pool(settings.database_url, max_size=1)
    try:
        await migrate(pool)
        rows = await ActivityReader(pool).dead_letter_counts(settings.topic_prefix)
    finally:
        await pool.close()
    if not rows:
        print("no dead letters recorded (is `herald run ledger` running?)")
        return 0
    for r in rows:
        print(
            f"{r['topic']}  {r['reason']}  {r['records']}  last={r['last_at'].isoformat(timespec='seconds')}"
        )
    return 0


async def show_one(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.ledger.deadletters import describe, show

    topic = resolve_topic(settings, args.topic)
    record = await show(settings, topic, args.partition, args.offset)
    if record is None:
        raise ConfigurationError(f"no record at {topic}[{args.partition}]@{args.offset}")
    print(json.dumps(describe(record), indent=2, default=_plain, ensure_ascii=False))
    return 0


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return str(args.actor)
    return f"cli:{getpass.getuser()}"


async def replay_cmd(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.infra.db import connect_pool, migrate
    from consumers.ledger.deadletters import replay

    chosen = [bool(args.at), bool(args.reason), bool(args.all)]
    if sum(chosen) != 1:
        raise ConfigurationError("choose exactly one of --at PARTITION:OFFSET, --reason R, --all")
    topic = resolve_topic(settings, args.topic)
    if not topic.endswith(".dlq"):
        raise ConfigurationError(f"{topic} is not a dead-letter topic")
    partition = offset = None
    if args.at:
        try:
            partition, offset = (int(x) for x in args.at.split(":", 1))
        except ValueError:
            raise ConfigurationError(f"--at {args.at!r}: expected PARTITION:OFFSET") from None
    selector = f"at={args.at}" if args.at else f"reason={args.reason}" if args.reason else "all"
    pool = await connect_pool(settings.database_url, max_size=1)
    try:
        await migrate(pool)
        result = await replay(
            settings,
            pool,
            topic,
            lambda r: args.reason is None or r.reason == args.reason,
            actor=_actor(args),
            selector=selector,
            partition=partition,
            offset=offset,
        )
    finally:
        await pool.close()
    for r in result.replayed:
        print(f"replayed {r.topic}[{r.partition}]@{r.offset} ({r.reason}) → {r.source_topic}")
    print(f"{len(result.replayed)} replayed, {result.skipped} skipped (no Herald source topic)")
    return 0 if result.replayed or not result.skipped else 1


async def audit(settings: HeraldSettings, _: argparse.Namespace) -> int:
    from consumers.infra.db import connect_pool, migrate
    from consumers.ledger.deadletters import audit_log

    pool = await connect_pool(settings.database_url, max_size=1)
    try:
        await migrate(pool)
        rows = await audit_log(pool)
    finally:
        await pool.close()
    for r in rows:
        print(
            f"{r['at'].isoformat(timespec='seconds')}  {r['actor']}  {r['action']}  {r['dlq_topic']} → "
            f"{r['target_topic']}  {r['selector']}  records={r['records']}"
        )
    return 0
