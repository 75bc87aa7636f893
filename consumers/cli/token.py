"""``herald token <user_id>``: mint a bearer token for the API (the demo, curl, tests).

Apps in production get tokens from their own identity provider, signed with the same key
(HS256) or the private half of ``HERALD_API__JWT_PUBLIC_KEY`` (EdDSA).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

__all__ = ["register", "token"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="mint an API bearer token for a user (needs HERALD_API__JWT_SECRET)")
    p.add_argument("user_id")
    p.add_argument("--ttl", type=float, default=None, help="lifetime in seconds (default api.token_ttl_s)")
    p.add_argument("--tenant", default="", help="the token's tenant claim (default: the default tenant)")
    p.add_argument("--curl", action="store_true", help="also print a curl line that reads the user's inbox")
    p.set_defaults(func=token)


def token(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.api.auth import TokenKeys, mint_token

    try:
        keys = TokenKeys.from_settings(settings.api)
        value = mint_token(
            keys,
            settings.api,
            args.user_id,
            now=datetime.now(UTC),
            ttl=timedelta(seconds=args.ttl) if args.ttl is not None else None,
            tenant=args.tenant,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    print(value)
    if args.curl:
        port = settings.api.port
        print(f"curl -H 'Authorization: Bearer {value}' http://127.0.0.1:{port}/v1/inbox")
    return 0
