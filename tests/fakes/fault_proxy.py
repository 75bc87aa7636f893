"""A small HTTP proxy in front of moto that injects provider faults for the next N requests.

    with FaultProxy(stack.moto_url) as proxy:
        proxy.inject(SES_THROTTLE, times=2)          # the next 2 matching requests get a 429
        ... point the adapter at proxy.url ...
        proxy.requests                                # what the client really sent

Faults are real HTTP answers (status, headers, body in the service's own error format) or a
stall longer than the client's read timeout, so botocore parses and raises exactly what it
would against AWS. It is a thread-per-connection stdlib server: the test's event loop is free.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

__all__ = [
    "RESET_AFTER_SEND",
    "SES_5XX",
    "SES_PAUSED",
    "SES_REJECT",
    "SES_THROTTLE",
    "SNS_AUTH",
    "SNS_THROTTLE",
    "Fault",
    "FaultProxy",
    "Recorded",
    "stall",
]


@dataclass(frozen=True)
class Fault:
    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay_s: float = 0.0  # stall before answering (a read timeout when longer than the client's)
    forward: bool = False  # after the delay, forward to moto instead of answering with this fault
    reset: bool = False  # then reset the connection (TCP RST) instead of answering


def _json_error(status: int, code: str, message: str) -> Fault:
    # SES v2 is restJson1: botocore reads the code from x-amzn-ErrorType.
    return Fault(
        status,
        (("Content-Type", "application/json"), ("x-amzn-ErrorType", code)),
        json.dumps({"message": message}).encode(),
    )


def _query_error(status: int, code: str, message: str) -> Fault:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
        f"</Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
    ).encode()
    return Fault(status, (("Content-Type", "text/xml"),), body)


SES_THROTTLE = _json_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
SES_5XX = _json_error(503, "ServiceUnavailable", "Service unavailable")
SES_REJECT = _json_error(400, "MessageRejected", "Email address is not verified.")
SES_PAUSED = _json_error(400, "SendingPausedException", "Sending is paused for this account.")
SNS_THROTTLE = _query_error(400, "Throttling", "Rate exceeded")
SNS_AUTH = _query_error(403, "AuthorizationError", "User is not authorized to perform: SNS:Publish")


# SES/SNS got the request (forwarded to moto, which acted on it), the answer never came back.
RESET_AFTER_SEND = Fault(forward=True, reset=True)


def stall(seconds: float, *, forward: bool = False) -> Fault:
    return Fault(504, (), b"", delay_s=seconds, forward=forward)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    fault: Fault | None


@dataclass
class _Plan:
    fault: Fault
    times: int
    match: str | None


@dataclass
class _State:
    upstream: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    plans: list[_Plan] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)

    def take(self, path: str, body: bytes, headers: dict[str, str]) -> Fault | None:
        haystack = path + "\n" + body.decode(errors="replace") + "\n" + headers.get("x-amz-target", "")
        with self.lock:
            for plan in self.plans:
                if plan.times > 0 and (plan.match is None or plan.match in haystack):
                    plan.times -= 1
                    return plan.fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State  # set on the per-proxy subclass

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = self.state.take(self.path, body, headers)
        with self.state.lock:
            self.state.requests.append(Recorded(self.command, self.path, headers, body, fault))
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault is not None and not fault.forward:
            self._answer(fault.status, list(fault.headers), fault.body)
            return
        self._forward(body, reset=fault is not None and fault.reset)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, as a load balancer dropping the connection does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
            self.close_connection = True

    def _forward(self, body: bytes, *, reset: bool = False) -> None:
        up = urlsplit(self.state.upstream)
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            headers["Host"] = up.netloc
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if reset:
                self._reset()
                return
            self._answer(resp.status, resp.getheaders(), data)
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self._state = _State(upstream.rstrip("/"))
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    def inject(self, fault: Fault, times: int = 1, *, match: str | None = None) -> None:
        """The next ``times`` requests whose path/body/target contain ``match`` get ``fault``."""
        with self._state.lock:
            self._state.plans.append(_Plan(fault, times, match))

    def clear(self) -> None:
        with self._state.lock:
            self._state.plans.clear()
            self._state.requests.clear()

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
