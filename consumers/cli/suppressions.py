"""``herald suppressions list|add|remove``: the addresses Herald will not send to.

Filled by provider feedback (SES hard bounces and complaints, Twilio STOP/unreachable numbers);
``add`` suppresses by hand, ``remove`` lifts one (after the user fixed their mailbox).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from consumers.infra.suppressions import SuppressionStore

__all__ = ["register"]

_CHANNELS = ["email", "sms"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("suppressions", help="the suppression list (hard bounces, complaints, opt-outs)")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = ssub.add_parser("list", help="suppressed addresses, newest first")
    ls.add_argument("--channel", choices=_CHANNELS)
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_suppressions)
    add = ssub.add_parser("add", help="suppress an address by hand")
    add.add_argument("address")
    add.add_argument("--channel", choices=_CHANNELS, default="email")
    add.add_argument("--detail", help="why (kept with the entry)")
    add.set_defaults(func=add_suppression)
    rm = ssub.add_parser("remove", help="lift a suppression")
    rm.add_argument("address")
    rm.add_argument("--channel", choices=_CHANNELS, default="email")
    rm.set_defaults(func=remove_suppression)


@asynccontextmanager
async def _store(settings: HeraldSettings) -> AsyncIterator[SuppressionStore]:
    from consumers.infra.db import connect_pool, migrate
    from consumers.infra.suppressions import SuppressionStore

    pool = await connect_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool)
        yield SuppressionStore(pool)
    finally:
        await pool.close()


async def list_suppressions(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        rows = await store.list(args.channel, limit=args.limit)
    for row in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "channel": row.channel,
                        "address": row.address,
                        "reason": row.reason,
                        "source": row.source,
                        "detail": row.detail,
                        "created_at": row.created_at.isoformat(),
                    }
                )
            )
        else:
            print(
                f"{row.channel}  {row.address}  {row.reason}  {row.source}  {row.created_at:%Y-%m-%d %H:%M}"
            )
    if not rows and not args.json:
        print("no suppressed addresses")
    return 0


async def add_suppression(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        added = await store.add(
            args.channel, [args.address], reason="manual", source="cli", detail=args.detail
        )
    print(f"suppressed {args.address}" if added else f"{args.address} was already suppressed")
    return 0


async def remove_suppression(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        removed = await store.remove(args.channel, args.address)
    if not removed:
        raise ConfigurationError(f"{args.address} is not on the {args.channel} suppression list")
    print(f"removed {args.address}")
    return 0
