"""Prometheus naming conventions for every metric defined anywhere in Herald."""

from __future__ import annotations

import re

from tests.ops._metrics import exported_families

# Values that grow without bound: a label on any of them is a cardinality bomb.
UNBOUNDED = {
    "user_id",
    "user",
    "event_id",
    "notification_id",
    "idempotency_key",
    "key",
    "recipient",
    "address",
    "email",
    "phone",
    "token",
    "url",
    "endpoint",
    "endpoint_id",
    "message_id",
    "provider_message_id",
    "error",
    "detail",
    "message",
    "offset",
}
BASE_UNITS = ("_seconds", "_bytes", "_ratio")


def test_metrics_follow_the_naming_conventions() -> None:
    families = exported_families()
    assert "herald_deliveries" in families  # the registry was really read
    problems = []
    for fam in families.values():
        where = f"{fam.name} ({fam.module})"
        if not re.fullmatch(r"herald_[a-z][a-z0-9_]*", fam.name):
            problems.append(f"{where}: not herald_snake_case")
        if re.search(r"_(ms|milliseconds|minutes|hours|kb|mb)(_|$)", fam.name):
            problems.append(f"{where}: not in base units")
        if fam.type == "histogram" and not fam.name.endswith(BASE_UNITS):
            problems.append(f"{where}: histogram without a unit suffix {BASE_UNITS}")
        if fam.type == "gauge" and fam.name.endswith(("_total", "_count", "_sum", "_bucket")):
            problems.append(f"{where}: gauge with a counter/histogram suffix")
        for label in fam.labels:
            if label in UNBOUNDED or label.endswith("_id"):
                problems.append(f"{where}: label {label!r} is unbounded")
    assert not problems, "\n".join(problems)
