"""When a supervisor restarts a worker that died, and when it gives up: pure decisions.

A worker that exits by itself (a crash, a SIGKILL from the OOM killer) is restarted after a
short, growing delay. Restarting for ever would hide a crash loop from Kubernetes, so after
``max_restarts`` exits within ``window_s`` the supervisor stops everything and exits non-zero:
the pod restarts and the crash loop is visible where operators look for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consumers.infra.backoff import backoff

__all__ = ["RestartPolicy", "restart_delay"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 5  # exits tolerated within the window
    window_s: float = 60.0
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0


def restart_delay(policy: RestartPolicy, exits: Sequence[float], now: float) -> float | None:
    """Seconds to wait before restarting a worker whose exits happened at ``exits`` (monotonic
    seconds, the latest included); ``None`` when it exited too often to restart again."""
    recent = [t for t in exits if now - t <= policy.window_s]
    if len(recent) > policy.max_restarts:
        return None
    return backoff(
        max(1, len(recent)), base=policy.base_delay_s, cap=policy.max_delay_s, jitter=0.0, rand=0.0
    )
