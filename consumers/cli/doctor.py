"""``herald doctor``: what would make mail or SMS fail in production, said plainly.

Reads (never changes) the SES v2 account, the sender identity and the configuration set, and
the SNS SMS sandbox; then prints the DNS records the sender domain needs. Exit code 1 when a
check FAILs (mail would bounce or never leave), 0 when there are only warnings.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any, Literal

from consumers.infra.settings import HeraldSettings

__all__ = ["Facts", "Finding", "dns_records", "evaluate", "gather", "register", "sender_domain"]

Level = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    check: str
    message: str


@dataclass
class Facts:
    """What the AWS APIs answered; ``*_error`` holds the code when a call failed."""

    sender: str
    domain: str
    account: dict[str, Any] | None = None
    account_error: str | None = None
    identity: dict[str, Any] | None = None
    identity_error: str | None = None
    configuration_set: str | None = None
    configuration_set_error: str | None = None
    sms_sandbox: bool | None = None
    sms_error: str | None = None
    dkim_tokens: list[str] = field(default_factory=list)
    sns_topic_arns: list[str] = field(default_factory=list)  # settings: SES feedback's allowed topics


def sender_domain(from_address: str) -> tuple[str, str]:
    """(address, domain) of a From header such as ``Herald <noreply@example.com>``. Pure."""
    address = parseaddr(from_address)[1]
    return address, address.rpartition("@")[2].lower()


def _account(f: Facts) -> list[Finding]:
    if f.account is None:
        return [
            Finding(
                "WARN",
                "ses account",
                f"could not read the SES account ({f.account_error}); sandbox and sending status unknown",
            )
        ]
    out: list[Finding] = []
    if not f.account.get("ProductionAccessEnabled", False):
        out.append(
            Finding(
                "FAIL",
                "ses sandbox",
                "the SES account is in the sandbox: mail goes only to verified "
                "addresses, at most 200 a day; request production access",
            )
        )
    else:
        out.append(Finding("OK", "ses sandbox", "production access enabled"))
    if not f.account.get("SendingEnabled", True):
        out.append(Finding("FAIL", "ses sending", "sending is paused for this account"))
    quota = f.account.get("SendQuota") or {}
    if quota:
        out.append(
            Finding(
                "OK", "ses quota", f"max {quota.get('MaxSendRate')}/s, {quota.get('Max24HourSend')} per 24 h"
            )
        )
    return out


def _identity(f: Facts) -> list[Finding]:
    if f.identity is None:
        why = "not found" if f.identity_error == "NotFoundException" else f"unreadable ({f.identity_error})"
        return [
            Finding(
                "FAIL",
                "sender identity",
                f"{f.domain}: identity {why}; SES rejects mail from {f.sender} (MessageRejected)",
            )
        ]
    out: list[Finding] = []
    verified = f.identity.get("VerifiedForSendingStatus") or f.identity.get("VerificationStatus") == "SUCCESS"
    out.append(
        Finding("OK", "sender identity", f"{f.domain} is verified")
        if verified
        else Finding("FAIL", "sender identity", f"{f.domain} is not verified for sending")
    )
    dkim = f.identity.get("DkimAttributes") or {}
    if dkim.get("SigningEnabled") and dkim.get("Status") == "SUCCESS":
        out.append(Finding("OK", "dkim", "DKIM signing enabled and verified"))
    else:
        out.append(
            Finding(
                "WARN",
                "dkim",
                f"DKIM not enabled (status {dkim.get('Status', 'unknown')}): "
                "mail is likelier to land in spam; publish the CNAME records below",
            )
        )
    return out


def _configuration_set(f: Facts) -> list[Finding]:
    if f.configuration_set is None:
        return [
            Finding(
                "WARN",
                "configuration set",
                "none configured (HERALD_EMAIL__CONFIGURATION_SET): no "
                "bounce/complaint events, no per-stream reputation",
            )
        ]
    if f.configuration_set_error:
        return [
            Finding(
                "FAIL",
                "configuration set",
                f"{f.configuration_set!r}: {f.configuration_set_error}; "
                "SendEmail fails with NotFoundException",
            )
        ]
    return [Finding("OK", "configuration set", f"{f.configuration_set!r} exists")]


def _sms(f: Facts) -> list[Finding]:
    if f.sms_sandbox is None:
        return [Finding("WARN", "sns sms sandbox", f"could not read the SMS sandbox status ({f.sms_error})")]
    if f.sms_sandbox:
        return [
            Finding(
                "FAIL",
                "sns sms sandbox",
                "the account is in the SMS sandbox: texts go only to verified numbers",
            )
        ]
    return [Finding("OK", "sns sms sandbox", "out of the SMS sandbox")]


def _feedback(f: Facts) -> list[Finding]:
    if not f.sns_topic_arns:
        return [
            Finding(
                "WARN",
                "ses feedback",
                "off until HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS lists the SNS topic(s) of the "
                "configuration set's event destination: bounces and complaints are not suppressed",
            )
        ]
    return [Finding("OK", "ses feedback", f"accepted from {', '.join(f.sns_topic_arns)}")]


def evaluate(f: Facts) -> list[Finding]:
    """Every finding, in a fixed order. Pure."""
    return [*_account(f), *_identity(f), *_configuration_set(f), *_feedback(f), *_sms(f)]


def dns_records(domain: str, dkim_tokens: list[str], region: str) -> list[tuple[str, str, str]]:
    """(name, type, value) the sender domain should publish for SPF, DKIM and DMARC. Pure."""
    records = [
        (domain, "TXT", '"v=spf1 include:amazonses.com ~all"'),
        (f"_dmarc.{domain}", "TXT", f'"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}"'),
    ]
    tokens = dkim_tokens or ["<token1>", "<token2>", "<token3>"]
    records += [(f"{t}._domainkey.{domain}", "CNAME", f"{t}.dkim.amazonses.com") for t in tokens]
    records.append(
        (f"mail.{domain}", "MX", f"10 feedback-smtp.{region}.amazonses.com  (custom MAIL FROM, optional)")
    )
    return records


def _code(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    from channels.aws import error_code

    return error_code(exc)[0] if isinstance(exc, ClientError) else type(exc).__name__


async def gather(settings: HeraldSettings) -> Facts:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    from consumers.channel.builders.aws import open_aws_client

    sender, domain = sender_domain(settings.email.from_address)
    facts = Facts(
        sender=sender,
        domain=domain,
        configuration_set=settings.email.configuration_set,
        sns_topic_arns=list(settings.providers.feedback.sns_topic_arns),
    )
    ses, ses_stack = await open_aws_client("sesv2", settings)
    try:
        try:
            facts.account = await ses.get_account()
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            facts.account_error = _code(exc)
        try:
            facts.identity = await ses.get_email_identity(EmailIdentity=domain)
            facts.dkim_tokens = list((facts.identity.get("DkimAttributes") or {}).get("Tokens") or [])
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            facts.identity_error = _code(exc)
        if facts.configuration_set:
            try:
                await ses.get_configuration_set(ConfigurationSetName=facts.configuration_set)
            except (ClientError, BotoCoreError, ResponseParserError) as exc:
                facts.configuration_set_error = _code(exc)
    finally:
        await ses_stack.aclose()
    sns, sns_stack = await open_aws_client("sns", settings)
    try:
        status = await sns.get_sms_sandbox_account_status()
        facts.sms_sandbox = bool(status.get("IsInSandbox"))
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        facts.sms_error = _code(exc)
    finally:
        await sns_stack.aclose()
    return facts


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check SES/SNS for what would make mail or SMS fail in production")
    p.set_defaults(func=doctor)


async def doctor(settings: HeraldSettings, args: argparse.Namespace) -> int:
    facts = await gather(settings)
    findings = evaluate(facts)
    out = sys.stdout
    out.write(
        f"herald doctor: sender {facts.sender} (domain {facts.domain}), region {settings.aws.region}"
        + (f", endpoint {settings.aws.endpoint_url}" if settings.aws.endpoint_url else "")
        + "\n\n"
    )
    for f in findings:
        out.write(f"  [{f.level:<4}] {f.check}: {f.message}\n")
    out.write(f"\nDNS records for {facts.domain}:\n")
    for name, kind, value in dns_records(facts.domain, facts.dkim_tokens, settings.aws.region):
        out.write(f"  {name:<48} {kind:<5} {value}\n")
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "WARN" for f in findings)
    out.write(f"\n{failed} problem(s), {warned} warning(s)\n")
    return 1 if failed else 0
