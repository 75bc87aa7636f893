"""``herald endpoints``: the webhook endpoint registry (add, list, rotate-secret, disable, enable, replay)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from consumers.infra.clock import SystemClock
from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from channels.webhook.endpoints_pg import Endpoint, EndpointStore

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("endpoints", help="manage webhook endpoints (system events)")
    esub = p.add_subparsers(dest="endpoints_cmd", required=True)

    a = esub.add_parser("add", help="register an endpoint; prints its id and signing secret")
    a.add_argument("--owner", required=True, help="the id system events are keyed by (DomainEvent.user_id)")
    a.add_argument("--url", required=True)
    a.add_argument(
        "--event-type",
        action="append",
        dest="event_types",
        default=None,
        help="glob pattern of event types (repeatable; default: *)",
    )
    a.add_argument("--description")
    a.add_argument("--id", dest="endpoint_id", help="choose the id (default: ep_<random>)")
    a.add_argument("--secret", help="bring your own whsec_ secret (default: generated)")
    a.set_defaults(func=add)

    ls = esub.add_parser("list", help="list endpoints with their delivery statistics")
    ls.add_argument("--owner")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (secrets hidden)")
    ls.set_defaults(func=list_endpoints)

    r = esub.add_parser("rotate-secret", help="new signing secret; the old one signs for a grace period too")
    r.add_argument("endpoint_id")
    r.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds the old secret stays active (default: HERALD_WEBHOOK__ROTATION_GRACE_S)",
    )
    r.add_argument("--secret", help="bring your own whsec_ secret (default: generated)")
    r.set_defaults(func=rotate_secret)

    d = esub.add_parser("disable", help="stop sending; failed and new messages are kept for replay")
    d.add_argument("endpoint_id")
    d.add_argument("--reason", default="manual")
    d.set_defaults(func=disable)

    e = esub.add_parser("enable", help="send again (the failure streak starts over)")
    e.add_argument("endpoint_id")
    e.set_defaults(func=enable)

    rp = esub.add_parser("replay", help="re-send the endpoint's undelivered messages since a time")
    rp.add_argument("endpoint_id")
    rp.add_argument("--since", required=True, help="ISO date/time (UTC if no zone) or a duration: 6h, 3d")
    rp.add_argument("--dry-run", action="store_true", help="list what would be re-sent")
    rp.set_defaults(func=replay)


@asynccontextmanager
async def _store(settings: HeraldSettings) -> AsyncIterator[EndpointStore]:
    from channels.webhook.endpoints_pg import EndpointStore
    from consumers.infra.db import connect_pool, migrate

    pool = await connect_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool)
        yield EndpointStore(pool)
    finally:
        await pool.close()


def _now() -> datetime:
    return SystemClock().now()


def _summary(ep: Endpoint) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(ep).items() if k != "secrets"}
    out["active_secrets"] = len(ep.active_secrets(_now()))
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.items()}


async def _get(store: EndpointStore, endpoint_id: str) -> Endpoint:
    ep = await store.get(endpoint_id)
    if ep is None:
        raise ConfigurationError(f"no webhook endpoint {endpoint_id!r}")
    return ep


async def add(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from channels.webhook.signing import InvalidSecret
    from channels.webhook.ssrf import AddressPolicy, BlockedDestination, check_url, refusal

    try:
        _, host, _ = check_url(args.url, https_only=settings.webhook.https_only)
    except BlockedDestination as exc:
        raise ConfigurationError(f"--url refused: {exc}") from exc
    policy = AddressPolicy.from_strings(settings.webhook.allow_hosts)
    try:
        reason = refusal(host.strip("[]"), policy.allow)
    except ValueError:
        reason = None  # a name: checked on every connection, after resolution
    if reason is not None:
        raise ConfigurationError(
            f"--url refused: {host} is a {reason} address (see HERALD_WEBHOOK__ALLOW_HOSTS)"
        )
    async with _store(settings) as store:
        try:
            ep = await store.add(
                args.owner,
                args.url,
                now=_now(),
                endpoint_id=args.endpoint_id,
                event_types=args.event_types or ["*"],
                description=args.description,
                secret=args.secret,
            )
        except InvalidSecret as exc:
            raise ConfigurationError(f"--secret: {exc}") from exc
    print(
        json.dumps(
            {
                "endpoint_id": ep.endpoint_id,
                "secret": ep.secrets[0],
                "url": ep.url,
                "event_types": list(ep.event_types),
            }
        )
    )
    return 0


async def list_endpoints(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        endpoints = await store.list_endpoints(args.owner)
    for ep in endpoints:
        if args.json:
            print(json.dumps(_summary(ep)))
            continue
        state = f"disabled ({ep.disabled_reason})" if ep.disabled else "enabled"
        failing = f" failing since {ep.failing_since:%Y-%m-%d %H:%M}" if ep.failing_since else ""
        print(
            f"{ep.endpoint_id}  {ep.owner_id}  {ep.url}  {','.join(ep.event_types)}  {state}{failing}  "
            f"ok={ep.total_successes} failed={ep.total_failures}"
        )
    if not endpoints and not args.json:
        print("no endpoints")
    return 0


async def rotate_secret(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from channels.webhook.signing import InvalidSecret

    grace = settings.webhook.rotation_grace_s if args.grace is None else args.grace
    async with _store(settings) as store:
        try:
            ep = await store.rotate_secret(
                args.endpoint_id, now=_now(), grace_s=grace, new_secret=args.secret
            )
        except InvalidSecret as exc:
            raise ConfigurationError(f"--secret: {exc}") from exc
    if ep is None:
        raise ConfigurationError(f"no webhook endpoint {args.endpoint_id!r}")
    expires = ep.previous_secret_expires_at.isoformat() if ep.previous_secret_expires_at else None
    print(
        json.dumps(
            {"endpoint_id": ep.endpoint_id, "secret": ep.secrets[0], "previous_secret_expires_at": expires}
        )
    )
    return 0


async def disable(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        await _get(store, args.endpoint_id)
        changed = await store.disable(args.endpoint_id, reason=args.reason, now=_now())
    print(f"{args.endpoint_id}: {'disabled' if changed else 'already disabled'}")
    return 0


async def enable(settings: HeraldSettings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        await _get(store, args.endpoint_id)
        await store.enable(args.endpoint_id)
    print(f"{args.endpoint_id}: enabled")
    return 0


async def replay(settings: HeraldSettings, args: argparse.Namespace) -> int:
    """Re-publish kept messages (:func:`consumers.console.endpoint_ops.replay_pending`)."""
    from consumers.console.endpoint_ops import parse_since, replay_pending

    now = _now()
    since = parse_since(args.since, now)
    async with _store(settings) as store:
        ep = await _get(store, args.endpoint_id)
        if ep.disabled and not args.dry_run:
            raise ConfigurationError(
                f"{ep.endpoint_id} is disabled ({ep.disabled_reason}): "
                f"`herald endpoints enable {ep.endpoint_id}` first"
            )
        if args.dry_run:
            pending = await store.pending(ep.endpoint_id, since=since)
            for p in pending:
                print(f"{p.first_failed_at.isoformat()}  {p.idempotency_key}  {p.event_type}  {p.reason}")
            print(f"{len(pending)} message(s) would be re-sent")
            return 0
        count = await replay_pending(settings, store, ep, since, now)
    print(f"{ep.endpoint_id}: re-sent {count} message(s) kept since {since.isoformat()}")
    return 0
