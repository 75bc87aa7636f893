"""A local Twilio: the Messages API (``POST /2010-04-01/Accounts/{sid}/Messages.json``).

A real HTTP server (starlette on uvicorn) on a free 127.0.0.1 port, in its own thread. Like
Twilio it checks

* HTTP Basic auth with the account SID and auth token (401, code 20003), and that the account in
  the path is the authenticated one (404, code 20404);
* the required parameters: ``To`` (21604), ``Body`` (21602), ``From`` or ``MessagingServiceSid``
  (21603); ``To`` in E.164 (21211); ``From`` a number the account owns (21606); a body of at most
  1600 characters (21617);

and answers errors in Twilio's JSON shape (``code``, ``message``, ``more_info``, ``status``).
Accepted messages are kept (``messages()``). ``fault(code)`` makes the next sends fail with any
Twilio error code (e.g. 20429, 21610, 20500). Used by the tests and by ``herald dev`` (SMS: SNS, then
this fake).
"""

from __future__ import annotations

import re
import secrets
from base64 import b64decode
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumers.devstack.fake_state import FakeState
from consumers.devstack.threaded_app import ThreadedApp

__all__ = ["ERRORS", "TwilioFake"]

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# code -> (HTTP status, message) as Twilio answers them.
ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service unavailable"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (
        400,
        "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account.",
    ),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
}


def _error(code: int) -> JSONResponse:
    status, message = ERRORS[code]
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


class TwilioFake(ThreadedApp):
    """``with TwilioFake() as twilio: twilio.base_url, twilio.account_sid, twilio.auth_token``."""

    name = "twilio-fake"

    def __init__(self, *, numbers: tuple[str, ...] = ("+15005550006",)) -> None:
        super().__init__()
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.numbers = numbers
        self.state: FakeState[list[int]] = FakeState()  # faults: [code, remaining]

    def env(self) -> dict[str, str]:
        """HERALD_TWILIO__* variables pointing Herald at this fake."""
        return {
            "HERALD_TWILIO__BASE_URL": self.base_url,
            "HERALD_TWILIO__ACCOUNT_SID": self.account_sid,
            "HERALD_TWILIO__AUTH_TOKEN": self.auth_token,
            "HERALD_TWILIO__FROM_NUMBER": self.numbers[0],
        }

    def fault(self, code: int, *, count: int = 1) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown fault {code}")
        with self.state.lock:
            self.state.faults.append([code, count])

    def messages(self) -> list[dict[str, Any]]:
        return self.state.accepted()

    def reset(self) -> None:
        self.state.reset()

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/2010-04-01/Accounts/{sid}/Messages.json", self._send, methods=["POST"])]
        )

    def _authenticated(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        ok = secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )
        return user if ok else None

    def _take_fault(self) -> int | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault[1] != 0:
                    if fault[1] > 0:
                        fault[1] -= 1
                    return fault[0]
        return None

    def _check(self, form: dict[str, str]) -> int | None:
        to, body = form.get("To"), form.get("Body")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        problems = [
            (not to, 21604),
            (not body, 21602),
            (not sender and not service, 21603),
            (bool(to) and not _E164.match(to or ""), 21211),
            (bool(sender) and sender not in self.numbers, 21606),
            (len(body or "") > 1600, 21617),
        ]
        return next((code for bad, code in problems if bad), None)

    async def _send(self, request: Request) -> Response:
        user = self._authenticated(request)
        if user is None:
            return _error(20003)
        if request.path_params["sid"] != user:
            return _error(20404)
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return _error(21604)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        fault = self._take_fault()
        code = fault if fault is not None else self._check(form)
        if code is not None:
            return _error(code)
        sid = "SM" + secrets.token_hex(16)
        record = {
            "sid": sid,
            "status": "queued",
            "to": form["To"],
            "from": form.get("From"),
            "body": form["Body"],
        }
        record["messaging_service_sid"] = form.get("MessagingServiceSid")
        record["status_callback"] = form.get("StatusCallback")
        self.state.record(record)
        return JSONResponse({**record, "account_sid": user}, status_code=201)
