"""``herald console login-link``: a one-time login link for the operators' console."""

from __future__ import annotations

import argparse

from consumers.infra.clock import SystemClock
from consumers.infra.settings import HeraldSettings

__all__ = ["login_url", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="the operators' console (served by `herald run api` under /console/)")
    csub = p.add_subparsers(dest="console_cmd", required=True)
    link = csub.add_parser("login-link", help="print a one-time login link (valid once, for a short time)")
    link.add_argument("--label", default="cli", help="who it is for (named in replay audit records)")
    link.add_argument(
        "--base-url", help="where the API is reached (default: http://127.0.0.1:<HERALD_API__PORT>)"
    )
    link.set_defaults(func=login_link)


async def login_url(settings: HeraldSettings, label: str, base_url: str | None = None) -> str:
    from consumers.console.auth import LoginLinks
    from consumers.infra.db import connect_pool, migrate

    pool = await connect_pool(settings.database_url, max_size=1)
    try:
        await migrate(pool)
        token = await LoginLinks(pool).create(label, SystemClock().now(), settings.console.login_link_ttl_s)
    finally:
        await pool.close()
    base = (base_url or f"http://127.0.0.1:{settings.api.port}").rstrip("/")
    return f"{base}/console/login?link={token}"


async def login_link(settings: HeraldSettings, args: argparse.Namespace) -> int:
    print(await login_url(settings, args.label, args.base_url))
    return 0
