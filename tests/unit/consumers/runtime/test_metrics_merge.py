"""A supervisor's /metrics: every worker's families once, each sample labelled with its worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumers.runtime.metrics_merge import MergedMetrics, merge_expositions


def _worker_text(handled: float, lag: float) -> str:
    registry = CollectorRegistry()
    Counter("herald_x_handled", "Handled.", ["topic"], registry=registry).labels("t").inc(handled)
    Gauge("herald_x_lag", "Lag.", registry=registry).set(lag)
    return generate_latest(registry).decode()


def _render(texts: list[tuple[str, str]]) -> str:
    merged = MergedMetrics()
    merged.families = merge_expositions(texts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(merged)
    return generate_latest(registry).decode()


def test_each_family_appears_once_with_every_worker_sample_labelled() -> None:
    out = _render([("0", _worker_text(3, 10)), ("1", _worker_text(5, 20))])
    families = {f.name: f for f in text_string_to_metric_families(out)}
    handled = {
        s.labels["worker"]: s.value for s in families["herald_x_handled"].samples if s.name.endswith("_total")
    }
    assert handled == {"0": 3.0, "1": 5.0}
    assert families["herald_x_handled"].type == "counter"
    lag = {s.labels["worker"]: s.value for s in families["herald_x_lag"].samples}
    assert lag == {"0": 10.0, "1": 20.0}
    assert out.count("# TYPE herald_x_lag ") == 1
    assert 'topic="t"' in out  # a sample keeps its own labels


def test_a_worker_whose_text_does_not_parse_is_left_out_not_the_scrape() -> None:
    out = _render([("0", _worker_text(1, 1)), ("1", "herald_x_lag{broken 1\n")])
    lag = [s for f in text_string_to_metric_families(out) if f.name == "herald_x_lag" for s in f.samples]
    assert [s.labels["worker"] for s in lag] == ["0"]
