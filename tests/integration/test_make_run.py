"""`make run` end to end: `herald dev` brings up everything, shows every path, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _wait_for(lines: list[str], pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(lines):
            if m := re.search(pattern, line):
                return m
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(lines)[-3000:])


class _Output:
    """A child's stdout and stderr, each read to its end by a thread of its own, a line at a time.

    Nothing else may read these pipes: ``Popen.communicate()`` beside a reader thread splits the
    output between the two readers (a chunk goes to whichever reads first) and what it read was
    thrown away. Under load that took the demo's digest lines from the console the test saw: the
    fallback had sent the digest, the assertion found no ``sent email medium``."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in iter(stream.readline, ""):
            lines.append(line)

    def wait(self, timeout: float) -> None:
        """Until the child exits and both pipes are read to their end."""
        self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(10)
        # A pipe still open (a grandchild holding it) would leave the test asserting on part of
        # the output: the very failure this helper exists to prevent, so it is said plainly.
        assert not any(r.is_alive() for r in self._readers), "a pipe of the child is still open after 10 s"


def test_output_keeps_every_line_of_both_pipes_while_the_test_waits() -> None:
    """Lines read while the test looks at them, then to the end: none lost, in order."""
    child = (
        "import sys, time\n"
        "for i in range(300):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    output = _Output(proc)
    try:
        _wait_for(output.out, r"^out 30$", 30)  # the demo test too reads a while before it waits
        output.wait(60)
    finally:
        proc.kill()
    assert output.out == [f"out {i}\n" for i in range(300)]
    assert output.err == [f"err {i}\n" for i in range(300)]


def _second_shell(
    lines: list[str], env: dict[str, str], logs: Path
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run what the console says to run in a second shell: eval the printed line, then herald."""
    hint = _wait_for(lines, r'eval "\$\((.+) dev --print-env --logs (\S+)\)"', 120)
    assert Path(hint.group(2)) == logs
    dead = _wait_for(lines, r"dlq .*no_such_event .* event=(\S+)", 60).group(1)
    results = {}
    for name, command in {"why": f"herald why {dead}", "doctor": "herald doctor"}.items():
        script = f'eval "$({hint.group(1)} dev --print-env --logs {hint.group(2)})" && {command}'
        started = time.monotonic()
        results[name] = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        results[name].stderr += f"\n({name} took {time.monotonic() - started:.1f}s)"
    return results


def test_herald_dev_shows_every_path_and_stops_cleanly(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
    }
    env = {k: v for k, v in env.items() if not k.startswith("HERALD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumers.cli.main", "dev", "--duration", "85", "--logs", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = _Output(proc)
    try:
        second_shell = _second_shell(output.out, env, tmp_path)
        output.wait(180)
    finally:
        proc.kill()
    out, err = "".join(output.out), "".join(output.err)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    # The second shell that `make run` prints works against the demo: doctor passes, why finds the
    # dead-lettered event by the id shown on the console.
    assert second_shell["doctor"].returncode == 0, (
        second_shell["doctor"].stdout + second_shell["doctor"].stderr
    )
    assert "0 problem(s)" in second_shell["doctor"].stdout
    why = second_shell["why"]
    assert why.returncode == 0 and "reason=unknown_event_type" in why.stdout, why.stdout + why.stderr
    assert "dead-lettered by herald-classifier" in why.stdout
    assert not (tmp_path / "env").exists()  # the demo's variables go with the demo
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
    # Workflows: a scheduled send held by the scheduler, and one cancelled before it fired.
    assert re.search(r"deferred .*payment_receipt user=alice .*reason=scheduled", out), out
    assert re.search(r"cancelled .*marketing\.weekly user=bruno .*reason=cancel_key", out), out
    assert re.search(r"web components .*open http://127\.0\.0\.1:\d+/demo", out), out
    assert re.search(
        r"console .*open http://127\.0\.0\.1:\d+/console/login\?link=hcl_[\w-]+ \(a one-time login\)", out
    )
    # Every process it started is gone, and so are the servers.
    pids = [int(p) for p in re.findall(r"process .* pid=(\d+)", out)]
    assert len(pids) >= 8
    assert not [p for p in pids if _alive(p)]
    assert "exited with" not in out  # no process died during the run
