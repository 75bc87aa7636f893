"""``herald run api`` as its own OS process (as deployed): a token from ``herald token``, the
curl line it prints, a clean SIGTERM with a stream open, and a schemathesis run over
``/openapi.json`` that must find no 5xx and no response that breaks the published schema."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port

BIN = Path(sys.executable).parent


@dataclass
class ApiProcess:
    url: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"API did not listen on {port}: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def api_process(stack: DevStack, tmp_path: Path) -> Iterator[ApiProcess]:
    port = free_port()
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "HERALD_PARTITIONS": "2",
        "HERALD_METRICS_PORT": "0",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_API__HOST": "127.0.0.1",
        "HERALD_API__PORT": str(port),
        "HERALD_API__JWT_SECRET": secrets.token_urlsafe(32),
        "HERALD_API__RATE_LIMIT_REQUESTS": "0",  # schemathesis sends hundreds of requests with one token
        "HERALD_API__RATE_LIMIT_KEY_PREFIX": f"t:api:{uuid.uuid4().hex[:8]}",
        "HERALD_API__SSE_HEARTBEAT_S": "0.5",
        "HERALD_ADMIN__KEY_PEPPER": secrets.token_urlsafe(32),  # serve the admin routes (user tokens: 401)
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumers.cli.main", "run", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_for_port(port, proc, log)
        yield ApiProcess(f"http://127.0.0.1:{port}", env, proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def mint(api: ApiProcess, user_id: str, *extra: str) -> list[str]:
    out = subprocess.run(
        [str(BIN / "herald"), "token", user_id, *extra],
        env=api.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip().splitlines()


def test_token_cli_curl_line_and_sigterm_with_an_open_stream(api_process: ApiProcess) -> None:
    token, curl = mint(api_process, "demo-user", "--curl")
    argv = shlex.split(curl)
    assert argv[0] == "curl" and argv[-1] == f"{api_process.url}/v1/inbox"
    headers = dict([argv[2].split(": ", 1)])
    assert headers == {"Authorization": f"Bearer {token}"}
    r = httpx.get(argv[-1], headers=headers, timeout=10)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}

    with httpx.stream("GET", f"{api_process.url}/v1/inbox/stream", headers=headers, timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        t0 = time.monotonic()
        api_process.proc.send_signal(signal.SIGTERM)
        for _ in lines:  # the server ends the stream itself on shutdown
            pass
    assert api_process.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10


def test_schemathesis_finds_no_server_error(api_process: ApiProcess) -> None:
    (token,) = mint(api_process, f"st-{uuid.uuid4().hex[:8]}")
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    run = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{api_process.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            checks,
            "--exclude-path",
            "/v1/inbox/stream",  # endless by design; covered by test_api_stream
            "--max-examples",
            "5",
            "--seed",
            "1",
            "--max-time",  # a bound on a shared 2-core machine; the phases stop early, never fail for it
            "20",
            "--workers",
            "2",
            "--request-timeout",
            "10",
        ],
        env=api_process.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    spec = httpx.get(f"{api_process.url}/openapi.json").json()
    total = sum(len(ops) for ops in spec["paths"].values())
    assert "passed" in run.stdout and f"{total - 1}/{total}" in run.stdout  # every operation but the stream
    server_log = api_process.log.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-3000:]
