"""`make run` end to end: `herald dev` brings up everything, shows every path, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_herald_dev_shows_every_path_and_stops_cleanly(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
    }
    env = {k: v for k, v in env.items() if not k.startswith("HERALD_")}
    proc = subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", "dev", "--duration", "55", "--logs", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    # Deliveries accepted by every fake provider, with subjects rendered in two locales.
    assert re.search(r"delivered email .*alice@example\.com.*subject='Security alert", out), out
    assert re.search(r"delivered email .*bruno@example\.com.*subject='(Recibo|Novidades)", out), out
    assert "delivered sms" in out and "delivered push" in out and "delivered in-app" in out
    assert re.search(r"delivered webhook signature verified", out), out
    # Decisions: suppression, deferral, DLQ, escalation, digest.
    assert re.search(r"suppressed .*marketing\.weekly user=dmitri .*reason=no_address", out)
    assert re.search(r"deferred .*user=carla .*reason=quiet_hours", out), out
    assert re.search(r"dlq .*no_such_event .*reason=unknown_event_type", out)
    assert re.search(r"escalated .*payment_receipt user=bruno .*reason=push_failed", out)
    assert re.search(r"escalated .*payment_receipt user=alice .*reason=push_timeout", out), out
    assert re.search(r"sent +email .*event_type=digest|sent +email +medium", out), out
    assert re.search(r"web components .*open http://127\.0\.0\.1:\d+/demo", out), out
    # Every process it started is gone, and so are the servers.
    pids = [int(p) for p in re.findall(r"process .* pid=(\d+)", out)]
    assert len(pids) >= 8
    assert not [p for p in pids if _alive(p)]
    assert "exited with" not in out  # no process died during the run
