"""``herald endpoints``: the commands against real PostgreSQL, and the argument parsing."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookSettings
from channels.webhook.signing import decode_secret
from consumers.cli.main import build_parser
from consumers.console.endpoint_ops import parse_since
from consumers.devstack import DevStack
from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError
from tests.conftest import make_settings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90m", NOW - timedelta(minutes=90)),
        ("6h", NOW - timedelta(hours=6)),
        ("3d", NOW - timedelta(days=3)),
        ("1w", NOW - timedelta(weeks=1)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00+01:00", datetime(2026, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
    ],
)
def test_parse_since(value: str, expected: datetime) -> None:
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["yesterday", "3 fortnights", ""])
def test_parse_since_refuses_nonsense(value: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_since(value, NOW)


def _args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["endpoints", *argv])


def _local(stack: DevStack) -> HeraldSettings:
    return make_settings(stack, webhook=WebhookSettings(allow_hosts=["127.0.0.1"]))


async def test_add_list_rotate_disable_enable(
    stack: DevStack, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _local(stack)
    args = _args(
        ["add", "--owner", "acct-cli", "--url", "http://127.0.0.1:9/hook", "--event-type", "system.*"]
    )
    assert await args.func(settings, args) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["secret"].startswith("whsec_") and len(decode_secret(added["secret"])) == 32
    ep_id = added["endpoint_id"]

    args = _args(["list", "--owner", "acct-cli", "--json"])
    await args.func(settings, args)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ep_id in {r["endpoint_id"] for r in rows}
    assert all("secret" not in r and "secrets" not in r for r in rows)  # never printed by list

    args = _args(["rotate-secret", ep_id, "--grace", "3600"])
    await args.func(settings, args)
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["secret"] != added["secret"] and rotated["previous_secret_expires_at"]
    stored = await EndpointStore(pg_pool).get(ep_id)
    assert stored is not None and stored.secrets == (rotated["secret"], added["secret"])

    args = _args(["disable", ep_id])
    await args.func(settings, args)
    stored = await EndpointStore(pg_pool).get(ep_id)
    assert stored is not None and stored.disabled_reason == "manual"
    args = _args(["replay", ep_id, "--since", "1h"])
    with pytest.raises(ConfigurationError, match="enable"):
        await args.func(settings, args)
    args = _args(["enable", ep_id])
    await args.func(settings, args)
    stored = await EndpointStore(pg_pool).get(ep_id)
    assert stored is not None and not stored.disabled
    args = _args(["replay", ep_id, "--since", "1h", "--dry-run"])
    await args.func(settings, args)
    assert "0 message(s) would be re-sent" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "https_only", "match"),
    [
        ("http://127.0.0.1:9/hook", False, "loopback"),  # not allow-listed in these settings
        ("http://169.254.169.254/", False, "metadata"),
        ("http://[::ffff:10.0.0.1]/", False, "ipv4_mapped"),
        ("ftp://example.com/", False, "scheme"),
        ("http://example.com/", True, "https_only"),
    ],
)
async def test_add_refuses_bad_urls(stack: DevStack, url: str, https_only: bool, match: str) -> None:
    settings = make_settings(stack, webhook=WebhookSettings(https_only=https_only))
    args = _args(["add", "--owner", "acct-cli", "--url", url])
    with pytest.raises(ConfigurationError, match=match):
        await args.func(settings, args)


async def test_unknown_endpoint_and_bad_secret(stack: DevStack, pg_pool: asyncpg.Pool) -> None:
    settings = _local(stack)
    for argv in (
        ["disable", "ep_nope"],
        ["enable", "ep_nope"],
        ["rotate-secret", "ep_nope"],
        ["replay", "ep_nope", "--since", "1d"],
    ):
        args = _args(argv)
        with pytest.raises(ConfigurationError, match="no webhook endpoint"):
            await args.func(settings, args)
    args = _args(["add", "--owner", "o", "--url", "https://example.com/h", "--secret", "whsec_!!"])
    with pytest.raises(ConfigurationError, match="secret"):
        await args.func(settings, args)
