"""Bulk-lane processes yield the CPU to the priority lane: they lower their scheduling priority
(a higher nice value) at start.

On a host where both lanes share cores (a VM, ``docker compose``, ``herald dev``), a bulk-lane
consumer draining a million messages is CPU-bound for minutes; at the same priority it takes its
share of every core from the classifier and the priority consumers, and the critical messages
wait. At nice 10 the kernel gives a runnable nice-0 process about 10× the CPU of a bulk one, so
the bulk lane runs on what the priority lane leaves (and still on all of it when the priority
lane is idle). Kubernetes runs each container in its own cgroup, where a nice value only ranks
the container's own processes: there the chart's lower CPU requests for the bulk lane do this.

Linux keeps the nice value per thread: every thread of the process is lowered, and threads
started later inherit it. Priority is only ever lowered (raising it needs privileges).
"""

from __future__ import annotations

import logging
import os

__all__ = ["BULK_PROCESSES", "is_bulk", "lower_bulk_priority", "nice_target"]

log = logging.getLogger(__name__)

# Processes whose whole work is bulk, whatever their --lane: the topic fan-out writes a
# broadcast's copies, which the bulk-lane classifier then classifies.
BULK_PROCESSES = frozenset({"fanout"})


def is_bulk(process: str, lane: str) -> bool:
    """Is ``herald run <process> --lane <lane>`` bulk-lane work?"""
    return lane == "bulk" or process in BULK_PROCESSES


def nice_target(bulk: bool, configured: int, current: int) -> int | None:
    """The nice value a process should take, or None to leave it as it is: only bulk-lane
    processes move, and only towards a lower priority (``configured`` above ``current``)."""
    if not bulk or configured <= current:
        return None
    return configured


def _threads() -> list[int]:
    """This process's thread ids (``0``, the calling thread, where /proc is not mounted)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def lower_bulk_priority(process: str, lane: str, configured: int) -> int | None:
    """Lower this process's CPU priority to ``configured`` if it is bulk-lane work; the nice value
    set, or None if it was left alone."""
    target = nice_target(is_bulk(process, lane), configured, os.getpriority(os.PRIO_PROCESS, 0))
    if target is None:
        return None
    for tid in _threads():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
    log.info("bulk-lane process: CPU priority lowered to nice %d (HERALD_RUNTIME__BULK_NICE)", target)
    return target
