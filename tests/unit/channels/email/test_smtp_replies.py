"""Which SMTP refusals blame our relay setup (relay denied, authentication wanted), and how
:func:`channels.email.smtp.classify` files them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import Failure
from channels.email.smtp import Stage, classify
from channels.email.smtp_replies import blames_our_relay, blames_the_sender, enhanced_code

# Replies as real servers word them (the text after the 3-digit code, as aiosmtplib gives it).
OURS = [
    "5.7.1 <someone@example.org>: Relay access denied",  # Postfix
    "5.7.1 <someone@example.org>... Relaying denied",  # Sendmail
    "5.7.1 Relaying denied. Proper authentication required.",
    "relay not permitted",  # Exim, no enhanced code
    "5.7.54 SMTP; Unable to relay recipient in non-accepted domain",  # Exchange
    "5.7.64 TenantAttribution; Relay Access Denied",  # Microsoft 365
    "5.7.57 Client was not authenticated to send anonymous mail",  # Microsoft 365
    "5.7.0 Mail relay denied",  # Gmail SMTP relay
    "5.7.0 Authentication Required",
    "5.7.8 Error: authentication failed",  # the code alone decides
    "5.7.1 Unable to relay for someone@example.org",
    "we do not relay for example.org",
    "5.0.0 Relaying not allowed",
    "5.7.1 Client must authenticate first",
    "Relaying is not permitted",
    # Gmail smtp-relay refusing a sender domain it does not know for us (multi-line reply)
    "5.7.0 Mail relay denied [203.0.113.9]. Invalid credentials for\n5.7.0 relay for one of the"
    " domains in: acme.example (as obtained from HELO and MAIL FROM).",
    "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",  # qmail
    # SES SMTP interface: an identity of our account (or a sandbox recipient) not verified
    "Message rejected: Email address is not verified. The following identities failed the check"
    " in region US-EAST-1: noreply@example.com",
    "5.7.1 Client was not authenticated",
]
NOT_OURS = [
    "5.1.1 No such user here",
    "5.1.1 <someone@example.org>: Recipient address rejected: User unknown in relay recipient table",
    "5.1.1 relay access denied",  # the enhanced code names the recipient's mailbox: it wins
    "5.2.2 Mailbox full",
    "5.7.1 Message rejected",
    "5.7.1 <someone@example.org>: Recipient address rejected: Access denied",
    "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
    "Requested action not taken: mailbox unavailable",
    "5.4.1 Recipient address rejected: Access denied",
    "",
    "relayed mail is fine here; mailbox unavailable",
    # Text the recipient (or another server) wrote, not this server:
    '<"relay access denied"@x.example>: Recipient address rejected',
    '5.7.1 "relay access denied"@x.example... Message rejected',
    "5.7.1 <relay-denied@x.example>: Recipient address rejected: Access denied",
    "5.7.1 Recipient address rejected: unverified address: host mx.x.example said: 554 5.7.1 Relay"
    " access denied (in reply to RCPT TO command)",  # Postfix quoting a callout's answer
    "5.7.1 Message rejected\nRelay access denied",  # only the first line is read
    # Gmail's DMARC refusal: the sender domain's SPF/DKIM at this receiver, not our relay login
    "5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail"
    " users, and has been blocked. The sender must authenticate with at least one of SPF or DKIM.",
    "5.7.13 User account disabled; authentication required",
]


@pytest.mark.parametrize("reply", OURS)
def test_relay_and_authentication_refusals_are_ours(reply: str) -> None:
    assert blames_our_relay(reply)
    failure = classify(550, stage="rcpt", reply=reply)
    assert failure == Failure.retry("provider_config")
    assert not failure.gone  # never the address's fault: nothing may suppress or forget it


@pytest.mark.parametrize("reply", NOT_OURS)
def test_recipient_and_content_refusals_are_not(reply: str) -> None:
    assert not blames_our_relay(reply)
    assert classify(550, stage="rcpt", reply=reply) == Failure.permanent("mailbox_unavailable")
    assert classify(554, stage="data", reply=reply) == Failure.permanent("rejected")


@pytest.mark.parametrize(
    ("reply", "code"),
    [("5.7.1 x", "5.7.1"), ("  5.7.054 x", "5.7.54"), ("4.2.1 busy", "4.2.1"), ("5.7.1x", None), ("x", None)],
)
def test_enhanced_code(reply: str, code: str | None) -> None:
    assert enhanced_code(reply) == code


_WORDS = st.text(st.sampled_from("abc xyz.-<>@:;"), max_size=40)
_OUR_PHRASES = st.sampled_from(["Relay access denied", "relaying DENIED", "unable to relay", "auth required"])


@given(st.integers(1, 6).filter(lambda s: s != 7), st.integers(1, 20), _WORDS, _OUR_PHRASES, _WORDS)
def test_a_specific_enhanced_code_of_another_subject_wins_over_any_text(
    subject: int, detail: int, before: str, phrase: str, after: str
) -> None:
    assert not blames_our_relay(f"5.{subject}.{detail} {before}{phrase}{after}")


_PLAIN = st.text(st.sampled_from("abc xyz.-:;"), max_size=40)  # no address, no quotes


@given(st.sampled_from(["", "5.7.1 ", "5.7.0 ", "5.0.0 ", "5.7.13 "]), _PLAIN, _OUR_PHRASES, _PLAIN)
def test_without_a_specific_code_the_phrase_decides(
    prefix: str, before: str, phrase: str, after: str
) -> None:
    expected = phrase != "auth required" or prefix.strip() in ("", "5.7.1", "5.7.0", "5.0.0")
    assert blames_our_relay(f"{prefix}{before} {phrase} {after}") is expected


@given(st.sampled_from(["", "5.7.1 ", "5.0.0 "]), _PLAIN, _OUR_PHRASES, _PLAIN, st.sampled_from('<"'))
def test_a_phrase_inside_an_address_or_a_quoted_string_is_not_the_servers(
    prefix: str, before: str, phrase: str, after: str, quote: str
) -> None:
    closing = ">" if quote == "<" else quote
    assert not blames_our_relay(f"{prefix}{before} {quote}{phrase}{closing}@example.org {after}")
    assert not blames_our_relay(f"{prefix}{before} User unknown\n{phrase}")  # not the first line


@given(st.sampled_from(["5.7.8", "5.7.9", "5.7.54", "5.7.57", "5.7.64"]), _WORDS)
def test_codes_that_name_our_setup_win_over_any_text(code: str, text: str) -> None:
    assert blames_our_relay(f"{code} {text}")


# (code, stage, reply) -> the tenant's sender? For a tenant's message: every 5xx at MAIL FROM,
# and relay, authentication or sender wording at RCPT TO or DATA; nothing before MAIL FROM.
TENANTS = [
    (553, "mail", "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald", True),
    (550, "mail", "5.4.5 Daily SMTP relay limit exceeded for customer", True),  # may be ours: uncounted
    (550, "rcpt", "5.7.64 TenantAttribution; Relay Access Denied", True),  # Microsoft 365
    (550, "rcpt", "5.7.0 Mail relay denied [203.0.113.9]. Invalid credentials for relay", True),  # Gmail
    # Postfix smtpd_delay_reject: the sender restriction answered at RCPT TO
    (553, "rcpt", "5.7.1 <noreply@acme.example>: Sender address rejected: not owned by user herald", True),
    (550, "rcpt", "5.1.8 <noreply@acme.example>: Sender address rejected: Domain not found", True),
    (550, "rcpt", "5.1.7 Bad sender address syntax", True),
    (550, "data", "5.7.1 Sender not allowed to send as this domain", True),
    (554, "data", "5.7.1 Relay access denied", True),
    (550, "rcpt", "5.1.1 No such user", False),  # the recipient's
    (554, "data", "5.7.1 Message rejected", False),
    (550, "data", "5.7.26 Unauthenticated email from acme.example is not accepted: the sender", False),
    (535, "mail", "5.7.8 Authentication credentials invalid", False),  # provider_auth, counted
    (421, "mail", "4.3.2 Service not available", False),
    (554, "connect", "5.7.1 Relay access denied", False),  # greeting/EHLO/AUTH: ours
]
SENDER_REFUSED = [reply for _, stage, reply, tenants in TENANTS if tenants and stage != "mail"]


@given(
    st.integers(500, 599),
    st.sampled_from(["connect", "mail", "rcpt", "data"]),
    st.sampled_from(OURS + NOT_OURS + SENDER_REFUSED),
    st.booleans(),
)
def test_classify_never_fails_a_message_for_good_for_our_relay_or_a_tenants_sender(
    code: int, stage: Stage, reply: str, tenant: bool
) -> None:
    failure = classify(code, stage=stage, reply=reply, tenant_sender=tenant)
    if blames_our_relay(reply) or (tenant and blames_the_sender(reply)):
        assert failure.retryable
    assert not failure.gone
    # Only a tenant's message is ever filed as the tenant's sender, and never before MAIL FROM.
    if failure.reason == "tenant_sender_config":
        assert tenant and stage != "connect" and failure.retryable
    if not tenant:  # our own sender: as it always was
        assert failure == classify(code, stage=stage, reply=reply)


@pytest.mark.parametrize(("code", "stage", "reply", "tenants"), TENANTS)
def test_which_refusals_of_a_tenants_message_are_its_senders(
    code: int, stage: Stage, reply: str, tenants: bool
) -> None:
    got = classify(code, stage=stage, reply=reply, tenant_sender=True)
    if tenants:
        assert got == Failure.retry("tenant_sender_config")
        # Our own sender refused alike stays ours (counted) or, worded as the sender's at RCPT
        # or DATA without relay words, the table's answer, as before.
        ours = classify(code, stage=stage, reply=reply)
        assert ours.reason != "tenant_sender_config"
    else:
        assert got == classify(code, stage=stage, reply=reply)


@pytest.mark.parametrize(
    ("reply", "sender"),
    [
        ("5.7.1 <noreply@acme.example>: Sender address rejected: not owned by user herald", True),
        ("5.1.8 Domain of sender address does not exist", True),
        ("5.1.7 Invalid address", True),  # the code alone decides
        ("Sender address rejected: Domain not found", True),
        ("5.7.1 sender denied", True),
        ("5.1.1 <noreply@acme.example>: Recipient address rejected: User unknown", False),
        ("5.7.1 <sender@x.example>: Recipient address rejected: Access denied", False),  # an address
        ("5.7.26 The sender must authenticate with at least one of SPF or DKIM", False),  # DMARC
        ("5.2.2 Mailbox full", False),
        ('5.7.1 "sender"@x.example... Message rejected', False),
    ],
)
def test_blames_the_sender(reply: str, sender: bool) -> None:
    assert blames_the_sender(reply) is sender
