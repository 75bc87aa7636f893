"""Tests that drive a toolchain outside Python (a JDK, Node.js) say loudly when it is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing_toolchain"]


def missing_toolchain(what: str, remedy: str) -> NoReturn:
    """Fail under CI (``CI=true``): a missing toolchain there is a broken setup, not a reason to pass.
    Elsewhere skip, naming what is missing and how to get it."""
    message = f"{what} is missing: {remedy}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
