"""Small ``herald`` commands: topics, produce, migrate, settings, stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from consumers.cli.templates import format_preview, load_payload, recipient_locale
from consumers.infra.redact import redact_url
from consumers.infra.settings import PACKAGE_DIR, HeraldSettings
from consumers.runtime.topics import Topics

__all__ = ["register", "settings_table"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("topics", help="manage Herald's topics")
    tsub = p.add_subparsers(dest="topics_cmd", required=True)
    c = tsub.add_parser("create", help="create every Herald topic and its DLQ (idempotent)")
    c.add_argument("--partitions", type=int, default=None)
    c.set_defaults(func=topics_create)

    p = sub.add_parser("produce", help="emit a domain event (as a service would)")
    p.add_argument("event_type")
    p.add_argument("--user", required=True, help="user id (the record key)")
    p.add_argument("--data", default="{}", help="JSON object of template variables")
    p.add_argument("--locale")
    p.add_argument("--event-id")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--force", action="store_true", help="send even when no route matches the event type")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="emit nothing: render every channel's templates in the recipient's locale, list missing variables",
    )
    p.set_defaults(func=produce)

    p = sub.add_parser("migrate", help="apply PostgreSQL migrations")
    p.set_defaults(func=run_migrations)

    p = sub.add_parser("settings", help="list every environment variable with its default")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=print_settings, needs_loop=False)

    p = sub.add_parser("stack", help="start only the embedded dev stack and print its URLs")
    p.set_defaults(func=stack)


async def topics_create(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.runtime.kafka import create_topics

    created = await create_topics(settings, Topics(settings.topic_prefix).all(), args.partitions)
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else " (all existed)"))
    return 0


async def produce(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.classifier.routing import load_routing
    from consumers.emitter import Emitter, build_event
    from consumers.preview import UnknownEventType, check_templates, route_for
    from consumers.runtime.kafka import KafkaUnavailable, create_topics

    data = load_payload(args.data, "--data")
    if args.dry_run:
        locale, source = (
            (args.locale, "--locale") if args.locale else await recipient_locale(settings, args.user)
        )
        locale = locale or settings.default_locale
        preview = check_templates(
            args.event_type, data, locales=[locale], user_id=args.user, settings=settings
        )
        print(f"dry run, nothing emitted; locale {locale} ({source})")
        print("\n".join(format_preview(preview)))
        return 1 if preview.problems else 0
    if not args.force:
        routing = load_routing(settings.classifier.routing_file, settings.classifier.default_tier)
        try:
            route_for(routing, args.event_type)
        except UnknownEventType as exc:
            raise UnknownEventType(f"{exc} (--force sends it anyway)") from None
    topic = Topics(settings.topic_prefix).events
    await create_topics(settings, [topic])
    try:
        async with Emitter(settings.kafka_bootstrap_servers, topic) as emit:
            for i in range(args.count):
                event_id = args.event_id if args.count == 1 else None
                event = build_event(
                    args.event_type, user_id=args.user, data=data, locale=args.locale, event_id=event_id
                )
                await emit.emit_event(event)
                if i < 5:
                    print(f"emitted {event.type} {event.event_id} for {event.user_id}")
    except OSError as exc:
        raise KafkaUnavailable(str(exc)) from exc
    return 0


async def run_migrations(settings: HeraldSettings, _: argparse.Namespace) -> int:
    from consumers.infra.db import connect_pool, migrate

    pool = await connect_pool(settings.database_url)
    try:
        applied = await migrate(pool)
    finally:
        await pool.close()
    print("applied: " + (", ".join(applied) or "nothing (up to date)"))
    return 0


def _rows(model: type[BaseModel], prefix: str, instance: Any) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            rows += _rows(type(value), f"{prefix}{name.upper()}__", value)
            continue
        var = f"{prefix}{name.upper()}"
        if prefix == "HERALD_" and name in ("kafka_bootstrap_servers", "database_url", "redis_url"):
            var = f"{name.upper()} or {var}"
        if isinstance(value, Path) and value.is_relative_to(PACKAGE_DIR.parent):
            value = value.relative_to(PACKAGE_DIR.parent)  # the shipped file, wherever Herald is installed
        shown = json.dumps(value, default=str) if isinstance(value, dict | list | tuple) else str(value)
        if isinstance(value, SecretStr):
            shown = redact_url(value) if name.endswith("_url") else "(secret)"
        rows.append((var, shown, info.description or ""))
    return rows


def settings_table(markdown: bool = True) -> str:
    defaults = HeraldSettings.model_construct()
    rows = _rows(HeraldSettings, "HERALD_", defaults)
    if markdown:
        lines = ["| variable | default | meaning |", "|---|---|---|"]
        lines += [f"| `{v}` | `{d}` | {m} |" for v, d, m in rows]
        return "\n".join(lines)
    return "\n".join(f"{v}={d}" + (f"  # {m}" if m else "") for v, d, m in rows)


def print_settings(_: HeraldSettings, args: argparse.Namespace) -> int:
    print(settings_table(args.markdown))
    return 0


async def stack(_: HeraldSettings, __: argparse.Namespace) -> int:
    from consumers.devstack import DevStack  # dev-only dependency

    with DevStack() as s:
        print(f"dev stack up in {s.started_in_s:.2f}s (Ctrl-C stops it)")
        for key, value in s.env().items():
            print(f"export {key}={value}")
        sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
    return 0
