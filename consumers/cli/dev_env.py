"""The second shell of ``make run``: the variables that point ``herald`` at the running demo.

The demo's servers listen on free ports chosen at start, so ``herald dev`` writes the variables
to ``<logs>/env`` and ``herald dev --print-env`` prints them as ``export`` lines for ``eval``.
The file names the demo's pid, so a demo that was killed is told apart from a running one.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from schemas.errors import ConfigurationError

__all__ = ["ENV_FILE", "SHARED", "export_lines", "read_env_file", "second_shell_hint", "write_env_file"]

ENV_FILE = "env"
# What a second shell needs from the demo's environment: the servers, the fake AWS account, the
# demo's sender (so `herald doctor` checks the identity the demo created), the webhook allow-list
# (so `herald endpoints add` accepts the local receiver) and the API key (so `herald token` works).
SHARED = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "REDIS_URL",
    "HERALD_AWS__ENDPOINT_URL",
    "HERALD_AWS__ACCESS_KEY_ID",
    "HERALD_AWS__SECRET_ACCESS_KEY",
    "HERALD_EMAIL__FROM_ADDRESS",
    "HERALD_WEBHOOK__ALLOW_HOSTS",
    "HERALD_API__JWT_SECRET",
    "HERALD_API__PORT",
)


def _bin_dir() -> str:
    # Not resolved: in a venv, python is a symlink out of it and `herald` sits beside the link.
    return os.path.dirname(os.path.abspath(sys.executable))


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export`` lines for the shared variables, and PATH so plain ``herald`` is this one. Pure
    but for the interpreter's directory."""
    lines = [f"export {k}={shlex.quote(env[k])}" for k in SHARED if k in env]
    lines.append(f'export PATH={shlex.quote(_bin_dir())}:"$PATH"')
    return lines


def write_env_file(logs: Path, env: Mapping[str, str]) -> Path:
    path = logs / ENV_FILE
    text = f'# herald dev pid={os.getpid()}: eval "$(herald dev --print-env)"\n'
    path.write_text(text + "\n".join(export_lines(env)) + "\n")
    path.chmod(0o600)  # holds the demo's API signing key
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_env_file(logs: Path) -> str:
    """The export lines of the running demo, or ConfigurationError when none is running."""
    path = logs / ENV_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no demo is running ({path} not found): start `make run` first, in this directory"
        ) from None
    first = text.partition("\n")[0]
    pid = first.partition("pid=")[2].partition(":")[0]
    if not pid.isdigit() or not _alive(int(pid)):
        raise ConfigurationError(f"the demo that wrote {path} is not running any more: start `make run`")
    return text


def second_shell_hint(logs: Path) -> list[str]:
    """What ``make run`` prints once the demo is up."""
    herald = os.path.relpath(os.path.join(_bin_dir(), "herald"))
    logs_arg = "" if logs == Path(".herald-dev") else f" --logs {shlex.quote(str(logs))}"
    return [
        f'in a second shell, in this directory: eval "$({herald} dev --print-env{logs_arg})"',
        "then: herald why EVENT_ID, herald tail outcomes, herald doctor, herald produce --dry-run ...",
    ]
