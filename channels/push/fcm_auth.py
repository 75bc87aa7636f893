"""OAuth2 access tokens for FCM HTTP v1 from a Google service account.

google-auth signs the JWT assertion and posts it to the token endpoint with ``requests``,
which blocks; the refresh therefore runs in a worker thread. An :class:`asyncio.Lock`
makes concurrent callers wait for the one refresh in flight instead of each starting
their own (no thundering herd), and the token is reused until ``margin`` before expiry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import service_account

from schemas.errors import HeraldError

__all__ = ["FCM_SCOPE", "CredentialsError", "FcmAuth", "TokenSource", "load_service_account", "needs_refresh"]

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class CredentialsError(HeraldError):
    """The token endpoint refused us or could not be reached."""


class TokenSource(Protocol):
    """What the FCM adapter needs from auth (a static source suffices in unit tests)."""

    async def token(self) -> str: ...

    async def invalidate(self, token: str) -> None:
        """The server rejected ``token`` (401): the next :meth:`token` must fetch a fresh one."""
        ...


def needs_refresh(token: str | None, expiry: datetime | None, now: datetime, margin: timedelta) -> bool:
    """True when there is no token or it expires within ``margin`` of ``now`` (all aware UTC)."""
    if token is None or expiry is None:
        return True
    return expiry - margin <= now


def load_service_account(
    *, file: Path | None = None, info_json: str | None = None, token_uri: str | None = None
) -> dict[str, Any]:
    """The service account's JSON as a dict, with ``token_uri`` overridden when given."""
    if info_json:
        info: dict[str, Any] = json.loads(info_json)
    elif file is not None:
        info = json.loads(Path(file).read_text())
    else:
        raise ValueError("FCM needs a service account: set push.service_account_file or service_account_json")
    if token_uri:
        info["token_uri"] = token_uri
    return info


def _utc(value: datetime | None) -> datetime | None:
    # google-auth keeps expiry as a naive UTC datetime.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class FcmAuth:
    """A cached, lazily refreshed bearer token for one service account."""

    def __init__(
        self,
        info: Mapping[str, Any],
        *,
        margin_s: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            dict(info), scopes=[FCM_SCOPE]
        )
        self.project_id: str | None = info.get("project_id")
        self._margin = timedelta(seconds=margin_s)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expiry: datetime | None = None
        self.refreshes = 0  # how many times the token endpoint was called (tests, logs)

    async def token(self) -> str:
        if not needs_refresh(self._token, self._expiry, self._clock(), self._margin):
            assert self._token is not None
            return self._token
        async with self._lock:
            # Whoever waited on the lock finds the token the first caller fetched.
            if needs_refresh(self._token, self._expiry, self._clock(), self._margin):
                await self._refresh()
            assert self._token is not None
            return self._token

    async def invalidate(self, token: str) -> None:
        async with self._lock:
            if self._token == token:  # a concurrent caller may have refreshed already
                self._token = None
                self._expiry = None

    async def _refresh(self) -> None:
        request = google.auth.transport.requests.Request()
        try:
            await asyncio.to_thread(self._creds.refresh, request)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialsError(f"token endpoint refused the service account: {exc}") from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise CredentialsError(f"token endpoint unreachable: {exc}") from exc
        self.refreshes += 1
        self._token = self._creds.token
        self._expiry = _utc(self._creds.expiry)
        log.info("fcm access token refreshed (expires %s)", self._expiry)
