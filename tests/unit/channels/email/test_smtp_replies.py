"""Which SMTP refusals blame our relay setup (relay denied, authentication wanted), and how
:func:`channels.email.smtp.classify` files them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import Failure
from channels.email.smtp import classify
from channels.email.smtp_replies import blames_our_relay, enhanced_code

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


@given(st.sampled_from(["", "5.7.1 ", "5.7.0 ", "5.0.0 ", "5.7.13 "]), _WORDS, _OUR_PHRASES, _WORDS)
def test_without_a_specific_code_the_phrase_decides(
    prefix: str, before: str, phrase: str, after: str
) -> None:
    assert blames_our_relay(f"{prefix}{before} {phrase} {after}")


@given(st.sampled_from(["5.7.8", "5.7.9", "5.7.54", "5.7.57", "5.7.64"]), _WORDS)
def test_codes_that_name_our_setup_win_over_any_text(code: str, text: str) -> None:
    assert blames_our_relay(f"{code} {text}")


@given(
    st.integers(500, 599),
    st.sampled_from(["connect", "mail", "rcpt", "data"]),
    st.sampled_from(OURS + NOT_OURS),
    st.booleans(),
)
def test_classify_never_fails_a_message_for_good_for_our_relay(
    code: int, stage: str, reply: str, tenant: bool
) -> None:
    failure = classify(code, stage=stage, reply=reply, tenant_sender=tenant)  # type: ignore[arg-type]
    if blames_our_relay(reply):
        assert failure.retryable
    assert not failure.gone


def test_a_tenant_sender_refused_at_mail_from_is_that_tenants_setup() -> None:
    # As SES's MailFromDomainNotVerified for a tenant identity: permanent, not counted by the
    # breaker, so one tenant's domain does not fail every tenant's mail over to the next provider.
    refused = "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald"
    assert classify(553, stage="mail", reply=refused, tenant_sender=True) == Failure.permanent(
        "tenant_sender_config"
    )
    assert classify(553, stage="mail", reply=refused) == Failure.retry("provider_config")
    # Our relay or credentials stay ours whoever the sender is.
    assert classify(550, stage="mail", reply="5.7.0 Authentication required", tenant_sender=True) == (
        Failure.retry("provider_config")
    )
    assert classify(535, stage="mail", tenant_sender=True) == Failure.retry("provider_auth")
    assert classify(421, stage="mail", tenant_sender=True) == Failure.retry("provider_unavailable")
    assert classify(550, stage="rcpt", reply="5.1.1 No such user", tenant_sender=True) == Failure.permanent(
        "mailbox_unavailable"
    )
