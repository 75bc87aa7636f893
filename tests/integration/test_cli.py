"""The `herald` command line as users run it: clear one-line errors, produce and tail round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port
from consumers.infra.settings import HeraldSettings

ROOT = Path(__file__).resolve().parents[2]


def herald(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "HERALD_RUNTIME__STARTUP_WAIT_S": "0.5", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", "passthrough"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:{port}"}, "Kafka is not reachable"),
        (
            ["run", "classifier"],
            {"DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/postgres"},
            "PostgreSQL is not reachable",
        ),
        (["run", "no-such-process"], {}, "unknown process 'no-such-process'"),
        (["run", "channel", "--channel", "fax"], {}, "argument --channel: invalid choice: 'fax'"),
        (["run", "channel", "--channel", "emial"], {}, "unknown channel 'emial'; did you mean 'email'?"),
        (["dev", "--print-env", "--logs", "/nonexistent"], {}, "no demo is running"),
        (["produce", "comment_reply", "--user", "u1", "--data", "{not json"], {}, "--data is not JSON"),
        (["produce", "comment_reply", "--user", "u1", "--data", "[1]"], {}, "--data must be a JSON object"),
        (["tail", "no.such.topic"], {}, "does not exist"),
        (
            ["settings"],
            {"HERALD_WEBHOOK__ALLOW_HOST": "127.0.0.1"},
            "did you mean HERALD_WEBHOOK__ALLOW_HOSTS?",
        ),
        (
            ["settings"],
            {"HERALD_SCHEDULER__BATCH_SIZE": "-5"},
            "HERALD_SCHEDULER__BATCH_SIZE=-5: input should",
        ),
        (["tial", "outcomes"], {}, "unknown command 'tial'; did you mean 'tail'?"),
        (["run", "clasifier"], {}, "did you mean 'classifier'?"),
        (
            ["produce", "order_shipped", "--user", "u1", "--dry-run"],
            {"HERALD_CLASSIFIER__ROUTING_FILE": "/nonexistent/routing.yaml"},
            "(set HERALD_CLASSIFIER__ROUTING_FILE)",
        ),
    ],
)
def test_expected_failures_are_one_line_errors(
    stack: DevStack, args: list[str], env: dict[str, str], message: str
) -> None:
    closed = str(free_port())
    proc = herald(*args, env={k: v.replace("{port}", closed) for k, v in env.items()})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    # One line says what to fix (logged retries of a server that never answered may come before it).
    assert len([line for line in proc.stderr.splitlines() if ": error: " in line]) == 1, proc.stderr


def test_produce_then_tail_shows_the_decoded_event(stack: DevStack, settings: HeraldSettings) -> None:
    env = {"HERALD_TOPIC_PREFIX": settings.topic_prefix}
    produced = herald(
        "produce",
        "payment_receipt",
        "--user",
        "u-cli",
        "--data",
        '{"amount": "3.00"}',
        "--event-id",
        "evt-cli-1",
        env=env,
    )
    assert produced.returncode == 0, produced.stderr
    tailed = herald("tail", "events", "-n", "1", env=env)
    assert tailed.returncode == 0, tailed.stderr
    record = json.loads(tailed.stdout.splitlines()[0])
    assert record["schema"] == "DomainEvent"
    assert (record["type"], record["user_id"], record["event_id"], record["key"]) == (
        "payment_receipt",
        "u-cli",
        "evt-cli-1",
        "u-cli",
    )
    assert json.loads(record["payload"]) == {"amount": "3.00"}


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["run", "passthrough"], "KAFKA_BOOTSTRAP_SERVERS"),
        (["run", "classifier"], "DATABASE_URL"),
    ],
)
def test_kafka_and_postgresql_are_waited_for_equally_then_named(
    stack: DevStack, args: list[str], variable: str
) -> None:
    """A process started before its servers waits HERALD_RUNTIME__STARTUP_WAIT_S for either one,
    then says which variable points at the server that never answered."""
    url = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:{port}",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:{port}/postgres",
    }[variable].replace("{port}", str(free_port()))
    started = time.monotonic()
    proc = herald(*args, env={variable: url, "HERALD_RUNTIME__STARTUP_WAIT_S": "3"})
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert f"(set {variable})" in proc.stderr.strip().splitlines()[-1]
    assert elapsed >= 3.0, elapsed


def test_produce_refuses_an_unrouted_type_unless_forced(stack: DevStack, settings: HeraldSettings) -> None:
    env = {"HERALD_TOPIC_PREFIX": settings.topic_prefix}
    refused = herald("produce", "payment_reciept", "--user", "u-typo", "--event-id", "evt-typo", env=env)
    assert refused.returncode == 2
    assert "closest: payment_receipt" in refused.stderr and "--force" in refused.stderr
    forced = herald(
        "produce", "payment_reciept", "--user", "u-typo", "--event-id", "evt-typo", "--force", env=env
    )
    assert forced.returncode == 0, forced.stderr
    tailed = herald("tail", "events", env=env)
    sent = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert [r["type"] for r in sent if r.get("event_id") == "evt-typo"] == ["payment_reciept"]  # once: forced


async def test_produce_dry_run_renders_in_the_recipients_locale_and_emits_nothing(
    stack: DevStack, settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    user = f"dry-{uuid.uuid4().hex[:8]}"
    await pg_pool.execute("INSERT INTO herald_recipients (user_id, locale) VALUES ($1, 'pt-BR')", user)
    env = {"HERALD_TOPIC_PREFIX": settings.topic_prefix}
    args = ["produce", "payment_receipt", "--user", user, "--dry-run", "--event-id", f"evt-{user}"]
    proc = herald(*args, "--data", '{"amount": "9.90", "currency": "BRL"}', env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # merchant is missing
    assert f"locale pt-BR ({user}'s locale)" in proc.stdout
    assert "push    pt-BR  FAIL" in proc.stdout and "missing variables: merchant" in proc.stdout
    ok = herald(*args, "--data", '{"amount": "9.90", "currency": "BRL", "merchant": "Padaria"}', env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "(templates: pt) title='Pagamento recebido'" in ok.stdout
    assert "every channel renders" in ok.stdout
    tailed = herald("tail", "events", env=env)
    assert f"evt-{user}" not in tailed.stdout  # nothing was emitted


def test_templates_check_command(tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text('{"author": "Ana", "post_title": "Roadmap"}')
    proc = herald("templates", "check", "comment_reply", str(payload))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "missing variables: excerpt" in proc.stdout
    payload.write_text('{"author": "Ana", "post_title": "Roadmap", "excerpt": "Agreed"}')
    proc = herald("templates", "check", "comment_reply", str(payload), "--locale", "pt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unknown = herald("templates", "check", "coment_reply", str(payload))
    assert unknown.returncode == 2 and "closest: comment_reply" in unknown.stderr
