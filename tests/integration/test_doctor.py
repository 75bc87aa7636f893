"""``herald doctor`` against moto (real API answers), and its pure verdicts as a table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from consumers.cli.doctor import Facts, dns_records, evaluate, sender_domain
from consumers.devstack import DevStack
from tests.fakes.moto_api import ensure_identity


def _levels(f: Facts) -> dict[str, str]:
    return {x.check: x.level for x in evaluate(f)}


GOOD_ACCOUNT = {
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"MaxSendRate": 14.0, "Max24HourSend": 50000.0},
}
GOOD_IDENTITY = {
    "VerifiedForSendingStatus": True,
    "DkimAttributes": {"SigningEnabled": True, "Status": "SUCCESS"},
}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            Facts(
                "a@x.com",
                "x.com",
                account=GOOD_ACCOUNT,
                identity=GOOD_IDENTITY,
                configuration_set="cs",
                sms_sandbox=False,
                sns_topic_arns=["arn:aws:sns:eu-west-1:1:ses"],
            ),
            {
                "ses feedback": "OK",
                "ses sandbox": "OK",
                "ses quota": "OK",
                "sender identity": "OK",
                "dkim": "OK",
                "configuration set": "OK",
                "sns sms sandbox": "OK",
            },
        ),
        (
            Facts(
                "a@x.com",
                "x.com",
                account={"ProductionAccessEnabled": False, "SendingEnabled": False},
                identity={"VerifiedForSendingStatus": False, "DkimAttributes": {"Status": "PENDING"}},
                sms_sandbox=True,
            ),
            {
                "ses feedback": "WARN",
                "ses sandbox": "FAIL",
                "ses sending": "FAIL",
                "sender identity": "FAIL",
                "dkim": "WARN",
                "configuration set": "WARN",
                "sns sms sandbox": "FAIL",
            },
        ),
        (
            Facts(
                "a@x.com",
                "x.com",
                account_error="NotFoundException",
                identity_error="NotFoundException",
                configuration_set="gone",
                configuration_set_error="NotFoundException",
                sms_error="500",
            ),
            {
                "ses feedback": "WARN",
                "ses account": "WARN",
                "sender identity": "FAIL",
                "configuration set": "FAIL",
                "sns sms sandbox": "WARN",
            },
        ),
    ],
)
def test_evaluate(facts: Facts, expected: dict[str, str]) -> None:
    assert _levels(facts) == expected


def test_sender_domain_and_dns_records() -> None:
    assert sender_domain("Herald <NoReply@Example.COM>") == ("NoReply@Example.COM", "example.com")
    records = dns_records("example.com", ["abc"], "eu-west-1")
    assert ("example.com", "TXT", '"v=spf1 include:amazonses.com ~all"') in records
    assert ("abc._domainkey.example.com", "CNAME", "abc.dkim.amazonses.com") in records
    assert any(name == "_dmarc.example.com" and value.startswith('"v=DMARC1;') for name, _, value in records)


def _doctor(stack: DevStack, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **stack.env(), **env}
    return subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", "doctor"],
        capture_output=True,
        text=True,
        env=full,
        timeout=60,
        check=False,
    )


async def test_doctor_against_moto_reports_plainly(stack: DevStack) -> None:
    assert stack.moto_url
    await ensure_identity(stack.moto_url, "example.com")
    ok = _doctor(stack, HERALD_EMAIL__FROM_ADDRESS="Herald <noreply@example.com>")
    assert "[OK  ] sender identity: example.com is verified" in ok.stdout, ok.stdout + ok.stderr
    assert "[WARN] dkim: DKIM not enabled (status NOT_STARTED)" in ok.stdout
    assert "[WARN] configuration set: none configured" in ok.stdout
    assert "[WARN] ses feedback: off until HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS" in ok.stdout
    assert "[WARN] ses account: could not read the SES account (404)" in ok.stdout  # moto answers 404
    assert "include:amazonses.com" in ok.stdout and "_dmarc.example.com" in ok.stdout
    assert ok.returncode == 0
    bad = _doctor(
        stack,
        HERALD_EMAIL__FROM_ADDRESS="noreply@not-verified.test",
        HERALD_EMAIL__CONFIGURATION_SET="missing-set",
    )
    assert "[FAIL] sender identity: not-verified.test: identity not found" in bad.stdout, (
        bad.stdout + bad.stderr
    )
    assert "[FAIL] configuration set: 'missing-set': NotFoundException" in bad.stdout
    assert bad.returncode == 1
