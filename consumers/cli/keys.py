"""``herald keys``: service API keys for the admin API (create, list, revoke).

``create`` prints the key once; only its HMAC (under ``HERALD_ADMIN__KEY_PEPPER``) is stored, so a
lost key is revoked and replaced, never recovered.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from consumers.api.admin.key_store import KeyStore

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="service API keys for the admin API (needs HERALD_ADMIN__KEY_PEPPER)")
    ksub = p.add_subparsers(dest="keys_cmd", required=True)
    c = ksub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("--name", required=True, help="who uses it, e.g. billing")
    c.add_argument(
        "--scopes",
        required=True,
        help="comma-separated: emit, recipients:read, recipients:write, topics:write, admin",
    )
    c.add_argument("--tenant", default=None, help="bind the key to one tenant (default: any tenant)")
    c.set_defaults(func=create)
    ls = ksub.add_parser("list", help="every key: id, name, scopes, tenant, created, revoked, last used")
    ls.set_defaults(func=list_keys)
    r = ksub.add_parser("revoke", help="revoke a key by id (the 12 hex digits after hrk_)")
    r.add_argument("key_id")
    r.set_defaults(func=revoke)


async def _store(settings: HeraldSettings) -> KeyStore:
    from consumers.api.admin.key_store import KeyStore
    from consumers.infra.db import connect_pool, migrate

    pepper = settings.admin.key_pepper
    if pepper is None:
        raise ConfigurationError(
            "HERALD_ADMIN__KEY_PEPPER is not set (32+ random bytes; the API needs the same value)"
        )
    pool = await connect_pool(settings.database_url, max_size=2)
    await migrate(pool)
    return KeyStore(pool, pepper.get_secret_value().encode())


async def create(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.api.admin.keys import parse_scopes

    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        raise ConfigurationError(f"--scopes: {exc}") from None
    store = await _store(settings)
    try:
        key = await store.create(args.name, scopes, args.tenant)
    finally:
        await store.pool.close()
    print(key.token)
    print(f"(key id {key.key_id}; shown once, store it now)")
    return 0


async def list_keys(settings: HeraldSettings, args: argparse.Namespace) -> int:
    store = await _store(settings)
    try:
        keys = await store.all()
    finally:
        await store.pool.close()
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
        print(
            f"{k.key_id}  {k.name:<16} {','.join(k.scopes):<32} tenant={k.tenant or '*'}  {state}  last used {used}"
        )
    return 0


async def revoke(settings: HeraldSettings, args: argparse.Namespace) -> int:
    store = await _store(settings)
    try:
        done = await store.revoke(args.key_id)
    finally:
        await store.pool.close()
    if not done:
        raise ConfigurationError(f"no active key {args.key_id!r}")
    print(f"revoked {args.key_id}")
    return 0
