"""The web components' pure logic (time formatting, locale fallback, pagination state, reconnect
backoff, time-zone default) under node's built-in test runner, so `make test` runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "consumers" / "api" / "web"


def test_component_logic_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (make setup installs it)")
    proc = subprocess.run(
        [node, "--test", "test/"], cwd=WEB, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout
