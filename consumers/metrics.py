"""Every Prometheus metric Herald exports, defined once.

Naming follows Prometheus conventions: ``herald_`` prefix, ``_total`` counters,
``_seconds`` histograms, base units. Labels are bounded sets (topic, channel, lane, tier,
status, reason, provider): never user ids, event ids or URLs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CONSUMED",
    "CONSUMER_LAG",
    "DLQ",
    "HANDLER_SECONDS",
    "HANDLER_RETRIES",
    "PRODUCED",
    "READY",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONSUMED = Counter("herald_consumed_total", "Records consumed.", ["consumer", "topic"])
PRODUCED = Counter("herald_produced_total", "Records produced and acknowledged by the broker.", ["topic"])
DLQ = Counter(
    "herald_dlq_total", "Records sent to a dead-letter topic, by source topic and reason.", ["topic", "reason"]
)
HANDLER_SECONDS = Histogram(
    "herald_handler_seconds",
    "Time to handle one poll batch (decode, decide, produce, commit).",
    ["consumer"],
    buckets=_LATENCY_BUCKETS,
)
HANDLER_RETRIES = Counter(
    "herald_handler_retries_total", "Batches retried after a retryable handler error.", ["consumer"]
)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag", "Records behind the high watermark, per partition.", ["group", "topic", "partition"]
)
READY = Gauge("herald_ready", "1 when the process is consuming normally, 0 while paused or starting.", ["consumer"])
