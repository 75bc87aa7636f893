"""What Herald exports (read from prometheus_client's registry) and what PromQL reads."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import promql_parser
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from tests.ops._tools import REPO

__all__ = ["Family", "exported_families", "exported_samples", "metric_modules", "selectors"]

_DEFINES_METRIC = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(")
# The exposition adds these to a family's name, per type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
}


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    labels: tuple[str, ...]
    module: str

    def samples(self) -> list[str]:
        return [self.name + s for s in _SUFFIXES.get(self.type, ("",))]


def metric_modules() -> list[str]:
    """Every Herald module that defines a metric (found by reading the tree, so new ones count)."""
    found = []
    for package in ("schemas", "channels", "consumers"):
        for path in sorted((REPO / package).rglob("*.py")):
            if _DEFINES_METRIC.search(path.read_text(encoding="utf-8")):
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def exported_families() -> dict[str, Family]:
    """Every ``herald_*`` family in the default registry once every metric module is imported."""
    owners: dict[int, str] = {}
    for name in metric_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                owners.setdefault(id(value), name)
    families: dict[str, Family] = {}
    for collector in list(REGISTRY._collector_to_names):  # the registry keeps no public list of collectors
        if not isinstance(collector, MetricWrapperBase):
            continue
        for fam in collector.describe():
            if fam.name.startswith("herald_"):
                families[fam.name] = Family(
                    fam.name, fam.type, tuple(collector._labelnames), owners.get(id(collector), "?")
                )
    return families


def exported_samples() -> dict[str, Family]:
    """Sample name (``herald_x_total``, ``herald_y_bucket``...) -> its family."""
    return {s: fam for fam in exported_families().values() for s in fam.samples()}


def selectors(expr: str) -> Iterator[tuple[str | None, set[str]]]:
    """(metric name, label names matched) of every vector selector in ``expr``; raises on bad PromQL."""
    found: list[tuple[str | None, set[str]]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            name = node.name
            if name is None:
                name = next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            found.append((name, labels - {"__name__"}))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return iter(found)
