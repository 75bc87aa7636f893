"""A local FCM: the HTTP v1 ``messages:send`` endpoint and Google's OAuth2 JWT-bearer token endpoint.

A real HTTP server (starlette on uvicorn) on a free 127.0.0.1 port, in its own thread, so
tests and ``herald dev`` run it in-process. Like Google it

* verifies the JWT assertion's RS256 signature against the service account's public key
  (registered with :meth:`FcmFake.add_service_account`), its ``iss``, ``aud``, ``scope``, ``exp``;
* checks the bearer token on every send (401 UNAUTHENTICATED when unknown or expired);
* refuses ``data`` values that are not strings and payloads over 4096 bytes (INVALID_ARGUMENT).

Accepted messages are kept (``GET /fake/messages``) and logged. ``POST /fake/faults`` makes the
next sends fail with any FCM error code (optionally for one token only), ``POST /fake/expire``
expires every issued access token, ``POST /fake/reset`` forgets messages and faults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumers.devstack.fake_state import FakeState
from consumers.devstack.threaded_app import ThreadedApp

__all__ = ["ERRORS", "FcmFake", "make_service_account", "write_service_account"]

log = logging.getLogger("herald.fcm_fake")

GOOGLE_TOKEN_AUD = "https://oauth2.googleapis.com/token"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

# errorCode -> (HTTP status, rpc status) as FCM v1 answers them.
ERRORS: dict[str, tuple[int, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
}


def make_service_account(token_uri: str, project_id: str = "herald-dev") -> dict[str, Any]:
    """A service-account JSON (as a dict) with a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"herald-{uuid.uuid4().hex[:8]}@{project_id}.iam.gserviceaccount.com",
        "client_id": str(uuid.uuid4().int)[:21],
        "token_uri": token_uri,
    }


def write_service_account(path: Path, token_uri: str, project_id: str = "herald-dev") -> dict[str, Any]:
    info = make_service_account(token_uri, project_id)
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return info


def _error(http: int, status: str, message: str, *details: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": http, "message": message, "status": status, "details": list(details)}},
        status_code=http,
    )


def _fcm_error(code: str, retry_after: int | None = None) -> JSONResponse:
    http, status = ERRORS[code]
    details: list[dict[str, Any]] = [{"@type": _FCM_ERROR, "errorCode": code}]
    if code == "INVALID_ARGUMENT":  # as FCM reports a malformed registration token
        details.append(
            {
                "@type": _BAD_REQUEST,
                "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
            }
        )
    resp = _error(http, status, f"fake {code}", *details)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


@dataclass
class _Fault:
    code: str
    remaining: int  # -1: forever
    token: str | None = None
    retry_after: int | None = None


@dataclass
class _State(FakeState[_Fault]):
    public_keys: dict[str, Any] = field(default_factory=dict)  # client_email -> public key
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    token_lifetime_s: int = 3600
    token_delay_s: float = 0.0
    token_requests: int = 0


class FcmFake(ThreadedApp):
    """``with FcmFake() as fcm: fcm.token_uri, fcm.base_url, fcm.service_account(path)``."""

    name = "fcm-fake"

    def __init__(self, project_id: str = "herald-dev") -> None:
        super().__init__()
        self.project_id = project_id
        self.state = _State()

    # -- what clients need ------------------------------------------------------------------
    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def add_service_account(self, info: dict[str, Any]) -> None:
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        with self.state.lock:
            self.state.public_keys[info["client_email"]] = key.public_key()

    def service_account(self, path: Path | None = None) -> dict[str, Any]:
        """A new service account this fake trusts; written to ``path`` when given."""
        info = (
            write_service_account(path, self.token_uri, self.project_id)
            if path
            else make_service_account(self.token_uri, self.project_id)
        )
        self.add_service_account(info)
        return info

    def env(self, service_account_file: Path) -> dict[str, str]:
        """HERALD_PUSH__* variables pointing Herald at this fake."""
        return {
            "HERALD_PUSH__SERVICE_ACCOUNT_FILE": str(service_account_file),
            "HERALD_PUSH__FCM_BASE_URL": self.base_url,
            "HERALD_PUSH__TOKEN_URI": self.token_uri,
        }

    # -- test controls (also over HTTP) -------------------------------------------------------
    def fault(
        self, code: str, *, count: int = 1, token: str | None = None, retry_after: int | None = None
    ) -> None:
        if code not in ERRORS and code != "EXPIRED_TOKEN":
            raise ValueError(f"unknown fault {code}")
        with self.state.lock:
            self.state.faults.append(_Fault(code, count, token, retry_after))

    def expire_tokens(self) -> None:
        with self.state.lock:
            self.state.access_tokens = dict.fromkeys(self.state.access_tokens, 0.0)

    def messages(self) -> list[dict[str, Any]]:
        return self.state.accepted()

    def reset(self) -> None:
        self.state.reset()

    # -- the app ------------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
                Route("/fake/messages", self._list, methods=["GET"]),
                Route("/fake/faults", self._faults, methods=["POST"]),
                Route("/fake/expire", self._expire, methods=["POST"]),
                Route("/fake/reset", self._reset, methods=["POST"]),
            ]
        )

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        if self.state.token_delay_s:
            await asyncio.sleep(self.state.token_delay_s)
        with self.state.lock:
            self.state.token_requests += 1
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        assertion = str(form.get("assertion", ""))
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
            key = self.state.public_keys.get(issuer)
            if key is None:
                raise jwt.InvalidTokenError(f"unknown service account {issuer!r}")
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUD, self.token_uri],
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except jwt.InvalidTokenError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.access_tokens[token] = time.time() + self.state.token_lifetime_s
        return JSONResponse(
            {"access_token": token, "expires_in": self.state.token_lifetime_s, "token_type": "Bearer"}
        )

    def _take_fault(self, token: str) -> _Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.token in (None, token) and fault.remaining != 0:
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    return fault
        return None

    async def _send(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        bearer = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        with self.state.lock:
            expiry = self.state.access_tokens.get(bearer)
        if expiry is None or expiry <= time.time():
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.path_params["project"] != self.project_id:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        raw = await request.body()
        try:
            message = json.loads(raw)["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        fault = self._take_fault(token)
        if fault is not None:
            if fault.code == "EXPIRED_TOKEN":
                self.expire_tokens()
                return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            return _fcm_error(fault.code, fault.retry_after)
        data = message.get("data") or {}
        if not all(isinstance(v, str) for v in data.values()):
            return _error(
                400,
                "INVALID_ARGUMENT",
                "data values must be strings",
                {"@type": _FCM_ERROR, "errorCode": "INVALID_ARGUMENT"},
            )
        size = len(
            json.dumps(
                {k: v for k, v in message.items() if k != "token"}, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
        if size > 4096:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "Message is too big",
                {"@type": _FCM_ERROR, "errorCode": "INVALID_ARGUMENT"},
            )
        name = f"projects/{self.project_id}/messages/{uuid.uuid4().hex}"
        self.state.record(
            {"name": name, "message": message, "http_version": request.scope.get("http_version")}
        )
        notification = message.get("notification") or {}
        log.info("FCM fake accepted push to %s…: %r", token[:12], notification.get("title"))
        return JSONResponse({"name": name})

    async def _list(self, _: Request) -> Response:
        return JSONResponse(self.messages())

    async def _faults(self, request: Request) -> Response:
        body = await request.json()
        try:
            self.fault(
                str(body["code"]),
                count=int(body.get("count", 1)),
                token=body.get("token"),
                retry_after=body.get("retry_after"),
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _expire(self, _: Request) -> Response:
        self.expire_tokens()
        return JSONResponse({"ok": True})

    async def _reset(self, _: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})
