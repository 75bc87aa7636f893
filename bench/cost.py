"""CPU cost: what a process spent (user + system, from its own rusage) per event it handled.

Wall-clock rates on a shared machine swing with the neighbours' load; the CPU seconds a process
was charged for do not (much), so every phase reports them next to its rate:

* **µs/event**: the process's CPU time over the measured window / events it handled.
* **utilisation**: the same CPU time / the window's wall time (1.0 = one core fully busy).

In-process runs read ``getrusage(RUSAGE_SELF)`` deltas; separate processes are read from
``/proc/<pid>/stat`` (``utime`` + ``stime``, the kernel's accounting of that process alone).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Cost",
    "Window",
    "above_idle",
    "proc_cpu_s",
    "runq_wait_s",
    "self_cpu_s",
    "total_us_per_event",
    "tree_cpu_s",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, children not included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and of its live children (PostgreSQL's backends under the postmaster)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    total = proc_cpu_s(pid)
    for child in children:
        try:
            total += proc_cpu_s(int(child))
        except OSError:  # exited meanwhile
            continue
    return total


def runq_wait_s(pid: int, tree: bool = False) -> float:
    """Seconds the threads of ``pid`` (and of its live children, with ``tree``) spent runnable but
    waiting for a CPU (``/proc/<pid>/task/<tid>/schedstat``, second field): CPU contention, as
    opposed to waiting on I/O. Threads that have ended take theirs with them."""
    pids = [pid]
    if tree:
        try:
            pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
    total = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


@dataclass(frozen=True)
class Cost:
    """One process's CPU over a measured window in which it handled ``events``."""

    process: str
    events: int
    cpu_s: float
    wall_s: float

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / self.events * 1e6 if self.events else float("nan")

    @property
    def utilisation(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else float("nan")

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "process": self.process,
            "events": self.events,
            "cpu_s": round(self.cpu_s, 4),
            "wall_s": round(self.wall_s, 4),
            "us_per_event": round(self.us_per_event, 2),
            "utilisation": round(self.utilisation, 3),
        }


class Window:
    """CPU and wall clock of some processes between :meth:`start` and :meth:`stop`.

    ``pids`` maps a name to a pid; ``None`` as the pid means this process (``RUSAGE_SELF``).
    The processes named in ``trees`` are counted with their children (a server forking a process
    per connection). A child that exits within the window takes its CPU with it: an estimate.
    """

    def __init__(self, pids: dict[str, int | None], trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        self._cpu0: dict[str, float] = {}
        self._cpu1: dict[str, float] = {}
        self._wait0: dict[str, float] = {}
        self._wait1: dict[str, float] = {}
        self._t0 = self._t1 = 0.0

    def _read(self, name: str, pid: int | None) -> float:
        if pid is None:
            return self_cpu_s()
        return tree_cpu_s(pid) if name in self.trees else proc_cpu_s(pid)

    def _waits(self) -> dict[str, float]:
        pids = {name: os.getpid() if pid is None else pid for name, pid in self.pids.items()}
        return {name: runq_wait_s(pid, name in self.trees) for name, pid in pids.items()}

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._cpu0 = {name: self._read(name, pid) for name, pid in self.pids.items()}
        self._wait0 = self._waits()

    def stop(self) -> None:
        self._t1 = time.perf_counter()
        self._cpu1 = {name: self._read(name, pid) for name, pid in self.pids.items()}
        self._wait1 = self._waits()

    def runq_waits(self) -> dict[str, float]:
        """Per process: seconds its threads waited for a CPU within the window."""
        return {name: self._wait1[name] - self._wait0[name] for name in self.pids}

    @property
    def wall_s(self) -> float:
        return self._t1 - self._t0

    def costs(self, events: int | dict[str, int]) -> list[Cost]:
        """Per process; ``events`` is one count for all or a count per process name."""
        return [
            Cost(
                name,
                events if isinstance(events, int) else events.get(name, 0),
                self._cpu1[name] - self._cpu0[name],
                self.wall_s,
            )
            for name in self.pids
        ]


def total_us_per_event(costs: Iterable[Cost], events: int) -> float:
    """All the processes' CPU together per event (or per notification: pass that count)."""
    return sum(c.cpu_s for c in costs) / events * 1e6 if events else float("nan")


def above_idle(costs: Iterable[Cost], idle: Iterable[Cost]) -> dict[str, float]:
    """Per process: CPU seconds of the window beyond what it spends idle at the rate measured in
    ``idle`` (same names) over the window's wall time; never below zero (a busy loop polls less)."""
    rate = {c.process: c.cpu_s / c.wall_s for c in idle if c.wall_s}
    return {c.process: max(0.0, c.cpu_s - rate.get(c.process, 0.0) * c.wall_s) for c in costs}
