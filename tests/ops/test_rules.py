"""The alert and recording rules: valid for Prometheus, and behaving as their unit tests say."""

from __future__ import annotations

import subprocess

import yaml

from tests.ops._tools import REPO, require_tool

RULES = REPO / "deploy" / "prometheus" / "herald.rules.yml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], check=False, capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_rules_pass_promtool_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests/"
    done = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_required_alert_exists() -> None:
    """The issue's alert list, by the metric each alert must watch."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    recorded = {r["record"]: r["expr"] for r in rules if "record" in r}

    def expanded(expr: str) -> str:
        # An alert on a recording rule watches whatever the rule reads.
        return expr + "".join(body for name, body in recorded.items() if name in expr)

    alerts = {r["alert"]: expanded(r["expr"]) for r in rules if "alert" in r}
    required = {
        "HeraldCriticalLatencyBudgetBurnFast": 'herald_end_to_end_seconds_bucket{tier="critical"',
        "HeraldCriticalLatencyBudgetBurnSlow": 'herald_end_to_end_seconds_bucket{tier="critical"',
        "HeraldDeadLettersGrowing": "herald_dlq_total",
        "HeraldProviderErrorRate": "herald_deliveries_total",
        "HeraldConsumerLagPriority": "herald_consumer_lag",
        "HeraldSchedulerLate": "herald_timer_lateness_seconds_bucket",
        "HeraldSchedulerBacklog": "herald_timers_due",
        "HeraldWebhookEndpointsDisabled": "herald_webhook_endpoints_disabled_total",
    }
    for alert, metric in required.items():
        assert alert in alerts, f"missing alert {alert}"
        assert metric in alerts[alert], f"{alert} does not watch {metric}"
    for name, expr in alerts.items():
        tested = any(f"alertname: {name}\n" in p.read_text() for p in RULE_TESTS)
        assert tested, f"alert {name} has no promtool unit test ({expr[:40]}...)"
