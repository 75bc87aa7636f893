"""The Grafana dashboard: every panel's PromQL parses and reads only metrics Herald exports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops._metrics import exported_families, exported_samples, selectors
from tests.ops._tools import REPO, require_tool

DASHBOARD = REPO / "deploy" / "grafana" / "herald.json"
RULES = REPO / "deploy" / "prometheus" / "herald.rules.yml"
# Grafana fills these in at query time; any valid duration stands in for them here.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels", [])))
    return out


def _exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    found = []
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            found.append((p["title"], expr))
    return found


def _rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def test_dashboard_has_the_required_panels() -> None:
    titles = " | ".join(t for t, _ in _exprs()).lower()
    for needle in (
        "throughput",
        "success rate",
        "latency p99 by tier",
        "lag by group",
        "dead-letter",
        "escalations",
        "digest",
        "timer",
    ):
        assert needle in titles or needle.replace("throughput", "/ s") in titles, needle
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_every_panel_query_parses_with_promtool(tmp_path: Path) -> None:
    """Prometheus's own parser: each query becomes a recording rule that `promtool check rules` reads."""
    exprs = _exprs()
    assert len(exprs) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"herald_dashboard:panel_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: a query with a syntax error is caught."""
    path = tmp_path / "bad.rules.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "x",
                        "rules": [
                            {
                                "record": "x:y",
                                "expr": "sum by (tier (rate(herald_events_classified_total[5m]))",
                            }
                        ],
                    }
                ]
            }
        )
    )
    done = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0


@pytest.mark.parametrize(("source", "exprs"), [("dashboard", _exprs()), ("rules", _rule_exprs())])
def test_queries_read_only_exported_metrics_and_labels(source: str, exprs: list[tuple[str, str]]) -> None:
    samples = exported_samples()
    recorded = {name for name, _ in _rule_exprs() if ":" in name}
    problems = []
    for title, expr in exprs:
        names = list(selectors(expr))
        assert names, f"{source} {title!r}: no metric in {expr}"
        for name, labels in names:
            if name in recorded:
                continue
            if name not in samples:
                problems.append(f"{title!r}: {name} is not exported by Herald")
                continue
            fam = samples[name]
            allowed = set(fam.labels) | {"instance", "job"} | ({"le"} if name.endswith("_bucket") else set())
            if labels - allowed:
                problems.append(f"{title!r}: {name} has no label(s) {sorted(labels - allowed)}")
    assert not problems, "\n".join(problems)


def test_every_exported_metric_is_watched() -> None:
    """A new metric must land on the dashboard or in an alert (and in the README table)."""
    used = {name for _, expr in _exprs() + _rule_exprs() for name, _ in selectors(expr)}
    readme = (REPO / "deploy" / "README.md").read_text()
    unwatched = [f.name for f in exported_families().values() if not used & set(f.samples())]
    undocumented = [
        f.name
        for f in exported_families().values()
        if not any(f"`{s}`" in readme for s in [f.name, *f.samples()])
    ]
    assert not unwatched, f"metrics on no panel and in no alert: {unwatched}"
    assert not undocumented, f"metrics missing from deploy/README.md: {undocumented}"
