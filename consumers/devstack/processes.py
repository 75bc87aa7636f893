"""Child processes that die with their parent (no orphans, even after SIGKILL of the parent)."""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["free_port", "spawn", "spawn_herald", "stop", "unprivileged_user", "wait_for_port"]

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unprivileged_user() -> pwd.struct_passwd | None:
    """Servers that refuse root (PostgreSQL) run as ``nobody`` when we are root."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


def _child_setup(user: pwd.struct_passwd | None, death_signal: int) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()  # own process group: Ctrl-C in the terminal reaches us, we stop it in order
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        # After setuid: a credential change clears the parent-death signal.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal)
        if os.getppid() == 1:  # parent already gone between fork and prctl
            os._exit(1)

    return setup


def spawn(
    args: Sequence[str | Path],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    user: pwd.struct_passwd | None = None,
    death_signal: int = signal.SIGTERM,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(
            [str(a) for a in args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=_child_setup(user, death_signal),  # noqa: PLW1509 - no threads yet at start
        )
    finally:
        out.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} not open after {timeout}s ({log})")


def spawn_herald(argv: Sequence[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``herald run <argv>`` as a child process (own session, dies with us), output to ``log``."""
    return spawn([sys.executable, "-m", "consumers.cli.main", "run", *argv], log=log, env=env)
