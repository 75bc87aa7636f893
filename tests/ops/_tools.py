"""Locating the system tools the ops tests drive (promtool, prometheus)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

__all__ = ["REPO", "require_tool"]

REPO = Path(__file__).resolve().parents[2]


def require_tool(name: str) -> str:
    """The tool's path; a loud failure (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed. It comes from Debian's `prometheus` package, which `make setup` "
            f"installs via scripts/setup-system.sh (as root: apt-get install prometheus). "
            f"The ops tests cannot check Herald's alert rules and metrics without it.",
            pytrace=False,
        )
    return path
