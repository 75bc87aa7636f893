"""Settings of the operators' console (``HERALD_CONSOLE__*``), declared beside it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ConsoleSettings"]


class ConsoleSettings(BaseModel, frozen=True):
    """The operators' console under ``/console/`` of the API process (docs/console.md)."""

    enabled: bool = Field(True, description="Serve the console under /console/ in `herald run api`.")
    session_ttl_s: int = Field(8 * 3600, gt=0, description="An operator session lasts this long after login.")
    login_link_ttl_s: int = Field(
        900, gt=0, description="A one-time login link (`herald console login-link`) is valid this long, once."
    )
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto", description="Secure session cookie: auto = except on localhost/127.0.0.1 over plain http."
    )
    live_window_s: int = Field(900, gt=0, description="The live page's window (lag is sampled every 15 s).")
