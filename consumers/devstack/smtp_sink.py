"""A real SMTP server (aiosmtpd) on a free 127.0.0.1 port that records what it received.

``with SmtpSink(security="starttls", username="u", password="p") as smtp: smtp.messages()``.
Like a submission server it

* offers STARTTLS (and with ``require_tls`` refuses MAIL before it) or speaks TLS from the
  first byte (``security="tls"``), with a certificate it makes for 127.0.0.1 (``ca_file``);
* requires AUTH PLAIN/LOGIN when given credentials (535 on wrong ones, 530 without), only
  over TLS;
* answers a queued fault (``fault(451)``, ``fault(550, stage="rcpt")``, ``fault(553, stage="mail")``,
  ``fault(554, stage="rcpt", reply="5.7.1 <a@b>: Relay access denied")``) to the next messages,
  or drops the connection without answering (``drop(stage="data")``: after
  the message was taken, as a server that crashed after committing it).

Accepted messages are kept with their envelope (``messages()``) until ``reset()``. Used by the
tests, the benchmark and ``herald dev`` (email: SES, then this server).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from consumers.devstack.processes import free_port

__all__ = ["Received", "SmtpSink", "self_signed"]

_REPLIES = {
    421: "421 4.3.2 Service not available, closing channel",
    450: "450 4.2.1 Mailbox busy, try later",
    451: "451 4.3.0 Local error in processing",
    452: "452 4.3.1 Insufficient system storage",
    550: "550 5.1.1 No such user here",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Mailbox name not allowed",
    554: "554 5.7.1 Message rejected",
}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost; the certificate is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald-dev-smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    authenticated_as: str | None
    queue_id: str

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


Stage = Literal["mail", "rcpt", "data"]
_DROP = 0  # a fault "code" that closes the connection instead of answering


@dataclass
class _Fault:
    code: int
    stage: Stage
    remaining: int
    reply: str | None = None  # the text after the code; None: the usual one for the code


@dataclass
class _State:
    messages: list[Received] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _reply(fault: _Fault) -> str:
    if fault.reply is not None:
        return f"{fault.code} {fault.reply}"
    return _REPLIES.get(fault.code, f"{fault.code} fault")


class _Handler:
    def __init__(self, state: _State) -> None:
        self.state = state

    def _take(self, stage: str) -> _Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.stage == stage and fault.remaining != 0:
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    return fault
        return None

    def _fault(self, server: SMTP, stage: str) -> str | None:
        """The reply for a queued fault at ``stage`` (None: none queued); a drop closes the connection."""
        fault = self._take(stage)
        if fault is None:
            return None
        if fault.code == _DROP:
            assert server.transport is not None
            server.transport.close()  # no reply: the client sees the connection go away
            return "421 4.3.2 connection dropped"  # never reaches the client
        return _reply(fault)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.state.lock:
            self.state.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        fault = self._fault(server, "mail")
        if fault is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self._fault(server, "rcpt")
        if fault is not None:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._take("data")
        code = None if fault is None else fault.code
        if fault is not None and code != _DROP:
            return _reply(fault)
        queue_id = uuid.uuid4().hex[:12].upper()
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            tls=session.ssl is not None
            or (server.transport is not None and server.transport.get_extra_info("ssl_object") is not None),
            authenticated_as=login.decode() if isinstance(login, bytes) else None,
            queue_id=queue_id,
        )
        with self.state.lock:
            self.state.messages.append(received)
        if code == _DROP:  # taken, then the connection goes away before the reply
            assert server.transport is not None
            server.transport.close()
        return f"250 2.0.0 Ok: queued as {queue_id}"


class SmtpSink:
    """An SMTP server in a thread of this process; see the module docstring."""

    def __init__(
        self,
        *,
        security: Literal["starttls", "tls", "none"] = "starttls",
        username: str | None = None,
        password: str | None = None,
        require_tls: bool = True,
        directory: Path | None = None,
    ) -> None:
        self.security = security
        self.username = username
        self.password = password
        self.require_tls = require_tls and security == "starttls"
        self.directory = directory or Path(tempfile.mkdtemp(prefix="herald-smtp-"))
        self.state = _State()
        self.port = 0
        self._controller: Controller | None = None
        self.ca_file: Path | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> Self:
        context: ssl.SSLContext | None = None
        if self.security != "none":
            cert, key = self_signed(self.directory)
            self.ca_file = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        self.port = free_port()
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port, "ready_timeout": 10}
        if self.security == "tls":
            kwargs["ssl_context"] = context
        elif self.security == "starttls":
            kwargs.update(tls_context=context, require_starttls=self.require_tls)
        if self.username is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.security != "none",
            )
        self._controller = Controller(_Handler(self.state), **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------
    def fault(self, code: int, *, count: int = 1, stage: Stage = "data", reply: str | None = None) -> None:
        """Answer ``code`` at ``stage`` to the next ``count`` messages (-1: until reset), with the
        text ``reply`` after the code (default: a usual text for the code)."""
        with self.state.lock:
            self.state.faults.append(_Fault(code, stage, count, reply))

    def drop(self, *, count: int = 1, stage: Stage = "data") -> None:
        """Close the connection instead of answering at ``stage`` for the next ``count`` messages.
        At ``data`` the message is taken (recorded) first: the reply is what is lost."""
        with self.state.lock:
            self.state.faults.append(_Fault(_DROP, stage, count))

    def messages(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def connections(self) -> int:
        """SMTP sessions opened so far (EHLO count; a STARTTLS session says EHLO twice)."""
        with self.state.lock:
            return self.state.connections

    def reset(self) -> None:
        with self.state.lock:
            self.state.messages.clear()
            self.state.faults.clear()

    def env(self) -> dict[str, str]:
        """HERALD_SMTP__* variables pointing Herald at this server."""
        env = {
            "HERALD_SMTP__HOST": "127.0.0.1",
            "HERALD_SMTP__PORT": str(self.port),
            "HERALD_SMTP__SECURITY": self.security,
        }
        if self.ca_file is not None:
            env["HERALD_SMTP__CA_FILE"] = str(self.ca_file)
        if self.username is not None:
            env["HERALD_SMTP__USERNAME"] = self.username
            env["HERALD_SMTP__PASSWORD"] = self.password or ""
        return env
