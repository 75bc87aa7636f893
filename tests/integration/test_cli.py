"""The `herald` command line as users run it: clear one-line errors, produce and tail round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
        (["run", "channel", "--channel", "fax"], {}, "--channel must be one of"),
        (["produce", "comment_reply", "--user", "u1", "--data", "{not json"], {}, "--data is not JSON"),
        (["produce", "comment_reply", "--user", "u1", "--data", "[1]"], {}, "--data must be a JSON object"),
        (["tail", "no.such.topic"], {}, "does not exist"),
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
