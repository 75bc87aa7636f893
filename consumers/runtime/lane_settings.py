"""The runtime settings a process runs with, by lane: bulk-lane processes fetch with their own,
longer wait (``HERALD_RUNTIME__BULK_FETCH_MAX_WAIT_MS``).

An idle consumer sends a fetch every ``fetch_max_wait_ms``, and every fetch costs the consumer
and the broker CPU (on the embedded tansu, about 30 ms of CPU per second each at 20 ms). The
priority lane keeps its short wait: on tansu, which polls its storage at half the time left
rather than waking on a produce, the wait bounds each hop's latency. The bulk lane has no
latency goal that tight, and its processes are idle most of the time, on the cores the priority
lane needs.
"""

from __future__ import annotations

from consumers.runtime.settings import RuntimeSettings

__all__ = ["for_lane"]


def for_lane(runtime: RuntimeSettings, bulk: bool) -> RuntimeSettings:
    """``runtime`` as a process of this lane uses it: a bulk-lane one fetches with the longer of the
    two waits, so raising ``FETCH_MAX_WAIT_MS`` (on a real Kafka, where it costs no latency) never
    leaves the bulk lane asking more often than the priority lane."""
    wait = max(runtime.fetch_max_wait_ms, runtime.bulk_fetch_max_wait_ms)
    if not bulk or runtime.fetch_max_wait_ms == wait:
        return runtime
    return runtime.model_copy(update={"fetch_max_wait_ms": wait})
