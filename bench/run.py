"""``make bench``: every benchmark in one run on one embedded stack, so the ratios are fair.

Prints a table and writes bench/results.json (figures, machine, load average, git commit) after
every phase, so a phase that fails keeps what the others measured. Each figure carries, where a
Herald process did the work, its CPU time per event and CPU utilisation (:mod:`bench.cost`),
and that CPU per event as a multiple of the no-op pass-through's and raw aiokafka's. Phases
whose code is not present are reported as missing, never silently skipped; a phase that
raises is reported as not completed and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Timing, mixed_events, preload
from bench.cost import Cost
from bench.passthrough import raw_passthrough, runtime_passthrough
from consumers.devstack import DevStack
from consumers.infra.settings import HeraldSettings, RuntimeSettings
from consumers.runtime import event_loop

RESULTS = Path(__file__).parent / "results.json"
console = Console(width=160)


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    goal: str = ""
    note: str = ""
    cpu_us: float | None = None  # CPU µs per event, all of the phase's Herald processes together
    util: float | None = None  # CPU s / wall s of the busiest process (1.0 = one core)
    cpu_vs_noop: float | None = None  # cpu_us / the runtime's no-op pass-through's
    cpu_vs_raw: float | None = None  # cpu_us / raw aiokafka's
    processes: list[dict[str, Any]] = field(default_factory=list)  # Cost.as_dict() per process
    phase: str = ""


# Until the pass-through phase has measured a rate, timeouts assume this slow a machine.
ASSUMED_RATE = 1_000.0


@dataclass
class Bench:
    stack: DevStack
    events: int
    scale: float = 1.0  # multiplies the 1M-sized phases (burst, broadcast, import) for small runs
    rows: list[Row] = field(default_factory=list)
    raw_rate: float = 0.0
    raw_cpu_us: float | None = None
    noop_cpu_us: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)  # phase -> "done" / "failed: ..."
    current: str = ""

    def settings(self, **overrides: Any) -> HeraldSettings:
        runtime = RuntimeSettings(session_timeout_ms=6000, heartbeat_interval_ms=500, poll_timeout_ms=100)
        base: dict[str, Any] = {
            "kafka_bootstrap_servers": self.stack.kafka,
            "database_url": self.stack.database_url,
            "redis_url": self.stack.redis_url,
            "topic_prefix": f"b{int(time.time() * 1000) % 10**9}",
            "partitions": 4,
            "metrics_port": 0,
            "metrics_host": "127.0.0.1",
            "runtime": runtime,
        }
        base.update(overrides)
        return HeraldSettings(**base)

    def timeout(self, records: int, *, floor: float = 120.0) -> float:
        """Seconds to allow for ``records`` to pass through: 20× what the slowest rate measured
        so far (raw aiokafka's, or ASSUMED_RATE before it is known) would take, at least ``floor``."""
        rate = min([r.value for r in self.rows if r.unit == "msg/s" and r.value > 0] or [ASSUMED_RATE])
        return max(floor, 20 * records / rate)

    def add(self, row: Row, costs: list[Cost] | None = None) -> None:
        """Record a figure; ``costs`` (one per Herald process of the run) fill its CPU columns."""
        if costs:
            events = max(c.events for c in costs)
            row.cpu_us = sum(c.cpu_s for c in costs) / events * 1e6 if events else None
            row.util = max(c.utilisation for c in costs)
            row.processes = [c.as_dict() for c in costs]
        if row.cpu_us is not None:
            if self.noop_cpu_us:
                row.cpu_vs_noop = row.cpu_us / self.noop_cpu_us
            if self.raw_cpu_us:
                row.cpu_vs_raw = row.cpu_us / self.raw_cpu_us
        row.phase = self.current
        self.rows.append(row)
        ratio = f" ({row.ratio:.2f}× {row.baseline})" if row.ratio is not None else ""
        cpu = f" [{row.cpu_us:,.1f} µs CPU/event, util {row.util:.2f}]" if row.cpu_us is not None else ""
        console.print(f"[bold]{row.name}[/]: {row.value:,.1f} {row.unit}{ratio}{cpu} {row.note}")

    def add_timing(self, row: Row, timing: Timing, process: str) -> None:
        """A figure measured in this process: its rusage over the timed window is the cost."""
        cost = timing.cost(process)
        self.add(row, [cost] if cost is not None else None)


async def phase_passthrough(b: Bench) -> None:
    s = b.settings()
    source = f"{s.topic_prefix}.events"
    with console.status(f"preloading {b.events:,} events"):
        await preload(s, source, mixed_events(b.events, users=20_000), 4)
    n, p = b.events, s.topic_prefix
    with console.status("raw aiokafka consume→produce"):
        raw1 = await raw_passthrough(s, source, f"{source}.raw1", n, f"{p}-raw1", timeout=b.timeout(n))
    with console.status("runtime, no-op handler"):
        noop = await runtime_passthrough(
            s, source, f"{source}.noop", n, f"{p}-noop", decode=False, timeout=b.timeout(n)
        )
    with console.status("runtime, decoding pass-through"):
        dec = await runtime_passthrough(s, source, f"{source}.dec", n, f"{p}-dec", timeout=b.timeout(n))
    with console.status("raw aiokafka again (drift check)"):
        raw2 = await raw_passthrough(s, source, f"{source}.raw2", n, f"{p}-raw2", timeout=b.timeout(n))
    b.raw_rate = (raw1.rate + raw2.rate) / 2
    raw_cpu = [c for c in (raw1.cost("raw aiokafka"), raw2.cost("raw aiokafka")) if c is not None]
    raw_total = None
    if len(raw_cpu) == 2:  # both runs' CPU together over both runs' events and wall time
        raw_total = Cost(
            "raw aiokafka",
            sum(c.events for c in raw_cpu),
            sum(c.cpu_s for c in raw_cpu),
            sum(c.wall_s for c in raw_cpu),
        )
        b.raw_cpu_us = raw_total.us_per_event
    noop_cost = noop.cost("runtime no-op")
    b.noop_cpu_us = noop_cost.us_per_event if noop_cost else None
    b.add(
        Row(
            "raw aiokafka pass-through",
            b.raw_rate,
            "msg/s",
            note=f"(runs: {raw1.rate:,.0f}, {raw2.rate:,.0f})",
        ),
        [raw_total] if raw_total else None,
    )
    b.add_timing(
        Row("runtime, no-op handler", noop.rate, "msg/s", "raw", noop.rate / b.raw_rate), noop, "noop"
    )
    b.add_timing(
        Row("runtime, Avro-decoding pass-through", dec.rate, "msg/s", "raw", dec.rate / b.raw_rate),
        dec,
        "pass-through",
    )
    b.extra["passthrough_source"] = source


PHASES: list[tuple[str, str]] = [
    ("passthrough", "bench.run:phase_passthrough"),
    ("classifier", "bench.classifier:phase"),
    ("channel_overhead", "bench.channels:phase"),
    ("smtp", "bench.smtp:phase"),
    ("isolation", "bench.isolation:phase"),
    ("e2e_cost", "bench.e2e:phase"),
    ("memory", "bench.memory:phase"),
    ("scaling", "bench.scaling:phase"),
    ("workers", "bench.scaling:phase_workers"),
    ("timers", "bench.timers:phase"),
    ("workflows", "bench.workflows:phase"),
    ("admin", "bench.admin:phase"),
    ("ledger", "bench.ledger:phase"),
    ("activity_timeline", "bench.ledger:phase_timeline"),
]


def _load(target: str) -> Callable[[Bench], Awaitable[None]] | None:
    import importlib

    module, _, attr = target.partition(":")
    try:
        fn: Callable[[Bench], Awaitable[None]] = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return fn


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def _cpu() -> str:
    return next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )


def _machine() -> dict[str, Any]:
    commit = _commit()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = _cpu()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "event_loop": os.environ.get("HERALD_RUNTIME__EVENT_LOOP", "uvloop"),
        "platform": platform.platform(),
    }


async def _run_phase(b: Bench, name: str, fn: Callable[[Bench], Awaitable[None]]) -> None:
    """One phase; if it raises, say so in the results and let the next one run."""
    b.current = name
    started = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    b.extra.setdefault("load_average", {})[name] = load
    b.extra.setdefault("runs", {})[name] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "cpu": _cpu(),
        "events": b.events,
        "scale": b.scale,
        "load_average": load,
    }
    try:
        await fn(b)
    except Exception as exc:  # any failure of a phase is reported, not fatal
        b.phases[name] = f"failed after {time.perf_counter() - started:.0f}s: {type(exc).__name__}: {exc}"
        console.print(f"[red]{name} did not complete[/]: {type(exc).__name__}: {exc}")
        console.print(traceback.format_exc(limit=5))
    else:
        b.phases[name] = f"done in {time.perf_counter() - started:.0f}s"
    finally:
        b.current = ""


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(b: Bench) -> None:
    table = Table(title=f"Herald benchmarks ({b.events:,} events)")
    cols = ("benchmark", "value", "unit", "vs", "ratio", "CPU µs/event", "util", "× no-op CPU", "× raw CPU")
    for col in (*cols, "goal", "note"):
        table.add_column(col)
    for r in b.rows:
        table.add_row(
            r.name,
            _fmt(r.value, ",.2f"),
            r.unit,
            r.baseline,
            _fmt(r.ratio, ".2f"),
            _fmt(r.cpu_us, ",.1f"),
            _fmt(r.util, ".2f"),
            _fmt(r.cpu_vs_noop, ".2f"),
            _fmt(r.cpu_vs_raw, ".2f"),
            r.goal,
            r.note,
        )
    console.print(table)
    for name, status in b.phases.items():
        if not status.startswith("done"):
            console.print(f"[red]{name}: {status}[/]")


def merge_results(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the phases of ``old`` it did not run (``--keep``): their rows, status and
    extras, each phase with the date, commit, size and load average of the run that measured it."""
    ran = set(new["phases"])
    kept = {k: v for k, v in old.get("phases", {}).items() if k not in ran}
    if not kept:
        return new
    m = old["machine"]
    old_runs = old.get("extra", {}).get("runs", {})
    old_load = old.get("extra", {}).get("load_average", {})
    runs = {
        k: old_runs.get(k)
        or {
            "date": m["date"],
            "commit": m["commit"],
            "cpu": m.get("cpu"),
            "events": old["events"],
            "load_average": old_load.get(k, m.get("load_average")),
        }
        for k in kept
    }
    extra = {**old.get("extra", {}), **new["extra"]}
    extra["runs"] = {**runs, **new["extra"].get("runs", {})}
    extra["load_average"] = {**old_load, **new["extra"].get("load_average", {})}
    rows = [r for r in new["rows"] if r.get("phase")]  # this run's start-up row: the kept run's stays
    old_rows = [r for r in old["rows"] if not r.get("phase") or r.get("phase") in kept]
    return {**new, "phases": {**kept, **new["phases"]}, "rows": old_rows + rows, "extra": extra}


def write_results(b: Bench, path: Path = RESULTS, keep: dict[str, Any] | None = None) -> None:
    """bench/results.json as it stands: called after every phase (merged into ``keep``, the file
    as it was, with ``--keep``)."""
    doc: dict[str, Any] = {
        "machine": _machine(),
        "events": b.events,
        "baselines": {"raw_cpu_us": b.raw_cpu_us, "noop_cpu_us": b.noop_cpu_us},
        "phases": b.phases,
        "rows": [r.__dict__ for r in b.rows],
        "extra": b.extra,
    }
    if keep is not None:
        doc = merge_results(keep, doc)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


async def main_async(args: argparse.Namespace) -> None:
    path: Path = args.results
    keep = json.loads(path.read_text()) if args.keep and path.exists() else None
    with DevStack() as stack:
        b = Bench(stack, args.events, scale=args.scale)
        console.print(f"dev stack up in {stack.started_in_s:.2f}s")
        b.add(Row("dev stack start-up", stack.started_in_s, "s"))
        for name, target in PHASES:
            if args.only and name not in args.only:
                continue
            fn = _load(target)
            if fn is None:
                console.print(f"[yellow]{name}: not available yet ({target} missing)[/]")
                b.phases[name] = "missing"
                continue
            console.rule(name)
            await _run_phase(b, name, fn)
            write_results(b, path, keep=keep)
    print_table(b)
    write_results(b, path, keep=keep)
    console.print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=int(os.environ.get("HERALD_BENCH_EVENTS", "200000")))
    p.add_argument("--only", nargs="*", help="phases to run")
    p.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("HERALD_BENCH_SCALE", "1")),
        help="multiply the 1M-sized phases (isolation burst, admin broadcast and import) by this, "
        "e.g. 0.02 for a validation run (default 1, or HERALD_BENCH_SCALE)",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where to write (default {RESULTS})")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the phases of bench/results.json this run does not run (each with its own "
        "date, size and load average)",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default=os.environ.get("HERALD_RUNTIME__EVENT_LOOP", "uvloop"),
        help="event loop of this process (raw aiokafka, the runtime's in-process runs) and of every "
        "Herald process it starts, so every figure and its baselines share one loop (default uvloop, "
        "or HERALD_RUNTIME__EVENT_LOOP)",
    )
    args = p.parse_args()
    os.environ["HERALD_RUNTIME__EVENT_LOOP"] = args.loop  # the processes it spawns inherit it
    event_loop.run(main_async(args), args.loop)


if __name__ == "__main__":
    main()
