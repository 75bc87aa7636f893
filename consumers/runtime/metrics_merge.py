"""One ``/metrics`` for a pod of workers: each worker's exposition, labelled ``worker="<i>"``.

Prometheus scrapes one port per pod; a supervisor with N workers (``herald run … --workers N``)
answers for all of them. Families are merged by name so each appears once, as the text format
requires, and every sample keeps its own labels plus the worker's index, so per-worker CPU,
lag and throughput stay visible and ``sum without (worker)`` gives the pod's figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["MergedMetrics", "merge_expositions"]


def merge_expositions(texts: Sequence[tuple[str, str]]) -> list[Metric]:
    """``(worker, exposition text)`` pairs → families with every sample labelled by its worker.

    A worker whose text does not parse contributes nothing (it is reported by readiness, not by
    breaking the whole scrape)."""
    families: dict[str, Metric] = {}
    for worker, text in texts:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            continue
        for family in parsed:
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            merged.samples.extend(_labelled(family.samples, worker))
    return list(families.values())


def _labelled(samples: Iterable[Sample], worker: str) -> Iterator[Sample]:
    for s in samples:
        yield Sample(s.name, {**s.labels, "worker": worker}, s.value, s.timestamp, s.exemplar)


class MergedMetrics(Collector):
    """A collector over families computed elsewhere (the supervisor refreshes them per scrape)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)
