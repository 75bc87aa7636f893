"""``herald templates check EVENT_TYPE payload.json`` and ``herald produce --dry-run``: render an
event's notifications for a payload, show what is missing, send nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from consumers.preview import ChannelPreview, Preview

__all__ = ["format_preview", "load_payload", "recipient_locale", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("templates", help="check an event type's templates against a payload")
    tsub = p.add_subparsers(dest="templates_cmd", required=True)
    c = tsub.add_parser(
        "check", help="route the event, render every channel in every locale, list missing variables"
    )
    c.add_argument("event_type")
    c.add_argument("payload", type=Path, help="a JSON file with the event's payload (- for stdin)")
    c.add_argument("--locale", action="append", help="only this locale (repeatable; default: all)")
    c.set_defaults(func=templates_check, needs_loop=False)


def load_payload(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{where} must be a JSON object")
    return data


def _shown(value: str | None, limit: int = 100) -> str:
    text = " ".join((value or "").split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _channel_line(c: ChannelPreview) -> list[str]:
    head = f"  {c.channel.value:<7} {c.locale:<6}"
    note = "" if c.why == "channels" else f" [{c.why.replace('_', '-')}]"
    if c.error:
        lines = [f"{head} FAIL{note} {c.error}"]
    elif c.content is None:
        lines = [f"{head} ok{note} the payload is sent as signed JSON (no template)"]
    else:
        content = c.content
        shown = f"subject={_shown(content.subject)}" if content.subject else f"title={_shown(content.title)}"
        if content.subject is None and content.title is None:
            shown = f"text={_shown(content.text)}"
        else:
            shown += f" text={_shown(content.text)}"
        lines = [f"{head} ok{note} (templates: {content.locale}) {shown}"]
    if c.missing and not c.error:
        lines.append(f"{' ' * 17}not given (the template copes): {', '.join(c.missing)}")
    elif c.missing:
        lines.append(f"{' ' * 17}missing variables: {', '.join(c.missing)}")
    return lines


def format_preview(preview: Preview) -> list[str]:
    r = preview.route
    lines = [
        f"{preview.event_type}: route {r.match!r} → tier {r.tier.value}, category {r.category}, "
        f"lane {r.lane.value}, template {r.template}"
    ]
    for c in preview.channels:
        lines += _channel_line(c)
    problems = len(preview.problems)
    lines.append(f"{problems} problem(s)" if problems else "every channel renders")
    return lines


def templates_check(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.preview import check_templates

    where = str(args.payload)
    try:
        text = Path("/dev/stdin").read_text() if where == "-" else args.payload.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {where}: {exc.strerror}") from exc
    preview = check_templates(
        args.event_type, load_payload(text, where), locales=args.locale, settings=settings
    )
    print("\n".join(format_preview(preview)))
    return 1 if preview.problems else 0


async def recipient_locale(settings: HeraldSettings, user_id: str) -> tuple[str | None, str]:
    """The user's locale as the classifier would find it, and how it was found."""
    import asyncpg

    from consumers.infra.db import DatabaseUnavailable, connect_pool

    try:
        pool = await connect_pool(settings.database_url, max_size=1)
    except DatabaseUnavailable:
        return None, "PostgreSQL not reachable: the default locale"
    try:
        locale = await pool.fetchval("SELECT locale FROM herald_recipients WHERE user_id = $1", user_id)
    except asyncpg.UndefinedTableError:  # never migrated: nobody has a locale yet
        locale = None
    finally:
        await pool.close()
    if locale:
        return str(locale), f"{user_id}'s locale"
    return None, f"{user_id} has no locale: the default"
