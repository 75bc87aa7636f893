"""Email over SMTP against a real SMTP server (aiosmtpd, from the dev stack) that records what it got."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
import pytest_asyncio

from channels.base import Content, Failure
from channels.email.smtp import SmtpEmailAdapter, SmtpSettings, classify
from channels.pacing import TokenBucket
from consumers.channel.builders.email import build_smtp
from consumers.devstack.smtp_sink import SmtpSink, Stage
from consumers.infra.resources import Resources
from consumers.infra.settings import EmailSettings, HeraldSettings
from schemas.models import Lane, OutcomeStatus
from tests.integration.test_channel_consumer import incoming, outcomes
from tests.integration.test_email_ses import consumer_for, email_message

FROM = "Herald <noreply@example.com>"
CONTENT = Content(subject="Hello", text="plain body", html="<p>html body</p>")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(security="starttls", username="herald", password="s3cret") as s:
        yield s


def adapter_for(
    sink: SmtpSink, *, tenant_from: Mapping[str, str] | None = None, **kw: Any
) -> SmtpEmailAdapter:
    options = {
        "host": "127.0.0.1",
        "port": sink.port,
        "security": sink.security,
        "username": sink.username,
        "password": sink.password,
        "ca_file": str(sink.ca_file) if sink.ca_file else None,
        "timeout_s": 3.0,
        "pool_size": 4,
        **kw,
    }
    return SmtpEmailAdapter(
        SmtpSettings(**options),
        from_address=FROM,
        bucket=TokenBucket(10_000),
        unsubscribe_url="https://example.com/unsub?u={user_id}&c={category}",
        tenant_from=tenant_from,
    )


@pytest_asyncio.fixture
async def adapter(sink: SmtpSink) -> AsyncIterator[SmtpEmailAdapter]:
    a = adapter_for(sink)
    yield a
    await a.close()


async def test_starttls_auth_send_recorded_by_the_server(
    settings: HeraldSettings, adapter: SmtpEmailAdapter, sink: SmtpSink
) -> None:
    prio, bulk = email_message("u-smtp"), email_message("u-smtp-bulk", lane=Lane.BULK)
    o1, o2 = outcomes(await consumer_for(settings, adapter).handle(incoming([prio, bulk])))  # type: ignore[arg-type]
    assert (o1.status, o2.status) == (OutcomeStatus.SENT, OutcomeStatus.SENT)
    assert o1.provider == "smtp"
    got = {r.rcpt_tos[0]: r for r in sink.messages()}
    p, b = got[prio.recipient], got[bulk.recipient]
    assert p.tls and p.authenticated_as == "herald" and p.mail_from == "noreply@example.com"
    assert o1.provider_message_id == p.queue_id
    assert p.message["Subject"] == "Receipt: 12.50 EUR at Café <Lisboa>"
    assert p.message["X-Herald-Idempotency-Key"] == prio.idempotency_key
    assert p.message["List-Unsubscribe"] is None
    assert b.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_connections_are_pooled(adapter: SmtpEmailAdapter, sink: SmtpSink) -> None:
    for i in range(5):
        o = await adapter.deliver(email_message(f"u-pool{i}"), CONTENT, idempotency_key=f"k{i}")
        assert o.ok, o
    assert len(sink.messages()) == 5
    assert sink.connections <= 2  # one session: EHLO before and after STARTTLS


async def test_wrong_password_is_retryable_provider_auth(sink: SmtpSink) -> None:
    a = adapter_for(sink, password="wrong")
    o = await a.deliver(email_message("u-auth"), CONTENT, idempotency_key="k-auth")
    assert (o.status, o.provider_code, o.reason) == ("failed_retryable", "535", "provider_auth")
    assert sink.messages() == []


async def test_certificate_not_trusted_is_refused(sink: SmtpSink) -> None:
    a = adapter_for(sink, ca_file=None)  # the system CAs do not know the dev certificate
    o = await a.deliver(email_message("u-tls"), CONTENT, idempotency_key="k-tls")
    assert o.status == "failed_retryable" and o.reason == "provider_unavailable"
    assert sink.messages() == []


@pytest.mark.parametrize(
    "case",
    [
        (451, "data", "failed_retryable", "provider_error"),
        (421, "data", "failed_retryable", "provider_unavailable"),
        (450, "rcpt", "failed_retryable", "mailbox_busy"),
        (550, "rcpt", "failed_permanent", "mailbox_unavailable"),
        (554, "data", "failed_permanent", "rejected"),
    ],
)
async def test_reply_codes_are_classified(
    adapter: SmtpEmailAdapter, sink: SmtpSink, case: tuple[int, Any, str, str]
) -> None:
    code, stage, status, reason = case
    sink.fault(code, stage=stage)
    o = await adapter.deliver(email_message("u-fault"), CONTENT, idempotency_key="k-f")
    assert (o.status, o.provider_code, o.reason) == (status, str(code), reason)
    # the connection is still usable afterwards (RSET), or a fresh one is opened
    again = await adapter.deliver(email_message("u-after"), CONTENT, idempotency_key="k-a")
    assert again.ok, again
    assert len(sink.messages()) == 1


async def test_a_refused_sender_is_our_configuration_and_retries(
    adapter: SmtpEmailAdapter, sink: SmtpSink
) -> None:
    # 553 at MAIL FROM refuses our sender, whatever the message: permanent would lose every mail
    # while the next provider is healthy; retryable, it opens the breaker and fails over.
    sink.fault(553, stage="mail", count=2)
    for i in range(2):
        o = await adapter.deliver(email_message(f"u-from{i}"), CONTENT, idempotency_key=f"k-from{i}")
        assert (o.status, o.provider_code, o.reason) == ("failed_retryable", "553", "provider_config")
    assert (await adapter.deliver(email_message("u-from-ok"), CONTENT, idempotency_key="k-ok")).ok
    assert len(sink.messages()) == 1


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (554, "5.7.1 <someone@example.org>: Relay access denied"),  # Postfix
        (550, "5.7.1 <someone@example.org>... Relaying denied"),  # Sendmail
        (550, "relay not permitted"),  # Exim: no enhanced status code, the text decides
        (550, "5.7.0 Authentication required"),
    ],
)
async def test_relay_denied_at_rcpt_is_our_configuration_and_retries(
    adapter: SmtpEmailAdapter, sink: SmtpSink, code: int, reply: str
) -> None:
    # Every recipient would be refused alike: permanent would lose each mail (and blame the
    # address) while the next provider is healthy; retryable, it opens the breaker and fails over.
    sink.fault(code, stage="rcpt", reply=reply)
    o = await adapter.deliver(email_message("u-relay"), CONTENT, idempotency_key="k-relay")
    assert (o.status, o.provider_code, o.reason) == ("failed_retryable", str(code), "provider_config")
    assert o.detail == reply
    sink.fault(550, stage="rcpt", reply="5.1.1 <someone@example.org>: User unknown in relay recipient table")
    o = await adapter.deliver(email_message("u-unknown"), CONTENT, idempotency_key="k-unknown")
    assert (o.status, o.reason) == ("failed_permanent", "mailbox_unavailable")  # the recipient's
    assert (await adapter.deliver(email_message("u-ok"), CONTENT, idempotency_key="k-ok")).ok
    assert len(sink.messages()) == 1


async def test_a_tenant_sender_is_the_from_and_the_envelope_sender(sink: SmtpSink) -> None:
    a = adapter_for(sink, tenant_from={"acme": "Acme <hi@acme.example>"})
    acme, other = email_message("u-acme"), email_message("u-other")
    acme.tenant, other.tenant = "acme", "globex"
    try:
        assert (await a.deliver(acme, CONTENT, idempotency_key="k-acme")).ok
        assert (await a.deliver(other, CONTENT, idempotency_key="k-other")).ok
    finally:
        await a.close()
    got = {r.rcpt_tos[0]: r for r in sink.messages()}
    assert got[acme.recipient].mail_from == "hi@acme.example"
    assert got[acme.recipient].message["From"] == "Acme <hi@acme.example>"
    assert got[other.recipient].mail_from == "noreply@example.com"
    assert got[other.recipient].message["From"] == FROM


@pytest.mark.parametrize(
    ("code", "stage", "reply", "ours"),
    [
        (
            553,
            "mail",
            "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald",
            ("failed_retryable", "provider_config"),
        ),
        (
            550,
            "mail",
            "5.4.5 Daily SMTP relay limit exceeded for customer",
            ("failed_retryable", "provider_config"),
        ),
        (
            550,
            "rcpt",
            "5.7.0 Mail relay denied [127.0.0.1]. Invalid credentials for relay for one of"
            " the domains in: acme.example (as obtained from HELO and MAIL FROM).",
            ("failed_retryable", "provider_config"),
        ),  # Gmail smtp-relay
        (
            550,
            "rcpt",
            "5.7.64 TenantAttribution; Relay Access Denied",
            ("failed_retryable", "provider_config"),
        ),
        (
            553,
            "rcpt",
            "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald",
            ("failed_permanent", "invalid_address"),  # Postfix smtpd_delay_reject: our sender, unchanged
        ),
        (554, "data", "5.7.1 Relay access denied", ("failed_retryable", "provider_config")),
    ],
)
async def test_a_refused_tenant_sender_is_the_tenants_and_retried(
    sink: SmtpSink, code: int, stage: Stage, reply: str, ours: tuple[str, str]
) -> None:
    # The same words say "not set up for acme.example" and "not set up for us": for a tenant's
    # sender the refusal is filed as the tenant's (retryable, failed over, not counted by the
    # breaker), nothing else is tried on the connection; our own sender's refusal is unchanged.
    a = adapter_for(sink, tenant_from={"acme": "Acme <hi@acme.example>"})
    acme = email_message("u-acme")
    acme.tenant = "acme"
    try:
        sink.fault(code, stage=stage, reply=reply, count=1)
        o = await a.deliver(acme, CONTENT, idempotency_key="k-1")
        assert (o.status, o.reason, o.detail) == ("failed_retryable", "tenant_sender_config", reply)
        sink.fault(code, stage=stage, reply=reply, count=1)
        o = await a.deliver(email_message("u-own"), CONTENT, idempotency_key="k-own")
        assert (o.status, o.reason) == ours
        assert sink.messages() == []
        assert (await a.deliver(acme, CONTENT, idempotency_key="k-3")).ok  # the connection is reusable
        assert [r.mail_from for r in sink.messages()] == ["hi@acme.example"]
        assert sink.connections == 2  # one STARTTLS session (EHLO twice), kept through every refusal
    finally:
        await a.close()


async def test_a_non_ascii_address_is_a_permanent_refusal_and_the_connection_is_closed(
    sink: SmtpSink,
) -> None:
    # aiosmtplib encodes MAIL FROM / RCPT TO as ASCII: a recipient with an IDN domain raised
    # UnicodeEncodeError out of the adapter (the connection leaked, the walk stopped, retried as an
    # internal error forever). A non-ASCII From never gets that far: the settings refuse it at
    # start, and the message cannot even be composed (permanent, before any connection).
    a = adapter_for(sink, tenant_from={"acme": "Acme <noreply@\u00e1cme.example>"})
    acme, idn = email_message("u-acme"), email_message("u-idn")
    acme.tenant = "acme"
    idn.recipient = "someone@ex\u00e4mple.org"
    try:
        o = await a.deliver(acme, CONTENT, idempotency_key="k-acme")
        assert (o.status, o.reason) == ("failed_permanent", "invalid_content") and sink.connections == 0
        o = await a.deliver(idn, CONTENT, idempotency_key="k-idn")
        assert (o.status, o.reason) == ("failed_permanent", "address_not_ascii")
        assert o.detail is not None and "recipient" in o.detail
        assert a._idle == []  # closed, not put back mid-transaction (MAIL FROM taken)
        assert (await a.deliver(email_message("u-ok"), CONTENT, idempotency_key="k-ok")).ok
    finally:
        await a.close()
    assert [r.mail_from for r in sink.messages()] == ["noreply@example.com"]


async def test_a_connection_lost_after_data_is_ambiguous_and_not_resent(
    adapter: SmtpEmailAdapter, sink: SmtpSink
) -> None:
    assert (await adapter.deliver(email_message("u-warm"), CONTENT, idempotency_key="k-warm")).ok
    sink.drop(stage="data")  # the server takes the message, then the connection goes away
    o = await adapter.deliver(email_message("u-drop"), CONTENT, idempotency_key="k-drop")
    assert (o.status, o.reason) == ("failed_retryable", "provider_timeout")
    assert len(sink.messages()) == 2  # taken once: not resent on a fresh connection


async def test_a_connection_lost_before_data_is_retried_or_a_plain_refusal(
    adapter: SmtpEmailAdapter, sink: SmtpSink
) -> None:
    assert (await adapter.deliver(email_message("u-warm"), CONTENT, idempotency_key="k-warm")).ok
    sink.drop(stage="mail")  # on the pooled connection: nothing was sent, a fresh one takes it
    assert (await adapter.deliver(email_message("u-p"), CONTENT, idempotency_key="k-p")).ok
    assert len(sink.messages()) == 2
    for conn in adapter._idle:
        conn.close()
    adapter._idle.clear()
    sink.drop(stage="rcpt")  # on a fresh connection: a refusal the next provider may take
    o = await adapter.deliver(email_message("u-f"), CONTENT, idempotency_key="k-f")
    assert (o.status, o.reason) == ("failed_retryable", "provider_unavailable")
    assert len(sink.messages()) == 2


async def test_implicit_tls_and_no_auth() -> None:
    with SmtpSink(security="tls") as sink:
        a = adapter_for(sink)
        try:
            o = await a.deliver(email_message("u-tls465"), CONTENT, idempotency_key="k-465")
        finally:
            await a.close()
        assert o.ok, o
        (r,) = sink.messages()
        assert r.tls and r.authenticated_as is None


async def test_server_down_is_retryable_and_not_ambiguous() -> None:
    with SmtpSink(security="none") as sink:
        port = sink.port
    a = SmtpEmailAdapter(
        SmtpSettings(host="127.0.0.1", port=port, security="none", timeout_s=1.0),
        from_address=FROM,
        bucket=TokenBucket(100),
    )
    o = await a.deliver(email_message("u-down"), CONTENT, idempotency_key="k-down")
    assert (o.status, o.reason) == ("failed_retryable", "provider_unavailable")


async def test_a_pooled_connection_the_server_closed_is_replaced(
    sink: SmtpSink, adapter: SmtpEmailAdapter
) -> None:
    assert (await adapter.deliver(email_message("u-1"), CONTENT, idempotency_key="k1")).ok
    for conn in adapter._idle:  # the server side goes away while the connection sits idle
        conn.close()
    assert (await adapter.deliver(email_message("u-2"), CONTENT, idempotency_key="k2")).ok
    assert len(sink.messages()) == 2


async def test_builder_reads_settings(stack: Any, sink: SmtpSink) -> None:
    from tests.conftest import make_settings

    settings = make_settings(
        stack,
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=sink.port,
            username="herald",
            password="s3cret",
            ca_file=sink.ca_file,
        ),
        email=EmailSettings(tenant_from_addresses={"acme": "Acme <hi@acme.example>"}),
    )
    a = await build_smtp(Resources(settings))
    acme = email_message("u-b")
    acme.tenant = "acme"
    try:
        assert (await a.deliver(acme, CONTENT, idempotency_key="k-b")).ok
    finally:
        await a.close()
    (r,) = sink.messages()
    assert (r.mail_from, r.message["From"]) == ("hi@acme.example", "Acme <hi@acme.example>")


def test_classify_table_and_first_digit() -> None:
    assert classify(535) == Failure.retry("provider_auth")
    assert classify(535, stage="connect") == Failure.retry("provider_auth")
    for stage in ("connect", "mail"):  # a 5xx before the recipient is named: our configuration
        assert classify(554, stage=stage) == Failure.retry("provider_config")
        assert classify(550, stage=stage) == Failure.retry("provider_config")
    assert classify(421, stage="connect") == Failure.retry("provider_unavailable")
    assert classify(550, stage="rcpt") == Failure.permanent("mailbox_unavailable")
    assert classify(554, stage="data") == Failure.permanent("rejected")
    assert classify(553) == Failure.permanent("invalid_address")
    assert classify(499).outcome("smtp", "499").reason == "provider_499" and classify(499).retryable
    assert classify(599).outcome("smtp", "599").reason == "provider_599" and not classify(599).retryable
    assert ssl.PROTOCOL_TLS_CLIENT  # the stdlib ssl module backs STARTTLS
