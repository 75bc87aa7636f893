"""``make bench``: every benchmark in one run on one embedded stack, so the ratios are fair.

Prints a table and writes bench/results.json (figures, machine, git commit). Phases whose
code is not present are reported as missing, never silently skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import mixed_events, preload
from bench.passthrough import raw_passthrough, runtime_passthrough
from consumers.devstack import DevStack
from consumers.infra.settings import HeraldSettings, RuntimeSettings

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


@dataclass
class Bench:
    stack: DevStack
    events: int
    rows: list[Row] = field(default_factory=list)
    raw_rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

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

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f" ({row.ratio:.2f}× {row.baseline})" if row.ratio is not None else ""
        console.print(f"[bold]{row.name}[/]: {row.value:,.1f} {row.unit}{ratio} {row.note}")


async def phase_passthrough(b: Bench) -> None:
    s = b.settings()
    source = f"{s.topic_prefix}.events"
    with console.status(f"preloading {b.events:,} events"):
        await preload(s, source, mixed_events(b.events, users=20_000), 4)
    with console.status("raw aiokafka consume→produce"):
        raw1 = await raw_passthrough(s, source, f"{source}.raw1", b.events, f"{s.topic_prefix}-raw1")
    with console.status("runtime, no-op handler"):
        noop = await runtime_passthrough(
            s, source, f"{source}.noop", b.events, f"{s.topic_prefix}-noop", decode=False
        )
    with console.status("runtime, decoding pass-through"):
        dec = await runtime_passthrough(s, source, f"{source}.dec", b.events, f"{s.topic_prefix}-dec")
    with console.status("raw aiokafka again (drift check)"):
        raw2 = await raw_passthrough(s, source, f"{source}.raw2", b.events, f"{s.topic_prefix}-raw2")
    b.raw_rate = (raw1.rate + raw2.rate) / 2
    b.add(
        Row(
            "raw aiokafka pass-through",
            b.raw_rate,
            "msg/s",
            note=f"(runs: {raw1.rate:,.0f}, {raw2.rate:,.0f})",
        )
    )
    b.add(Row("runtime, no-op handler", noop.rate, "msg/s", "raw", noop.rate / b.raw_rate))
    b.add(Row("runtime, Avro-decoding pass-through", dec.rate, "msg/s", "raw", dec.rate / b.raw_rate))
    b.extra["passthrough_source"] = source


PHASES: list[tuple[str, str]] = [
    ("passthrough", "bench.run:phase_passthrough"),
    ("classifier", "bench.classifier:phase"),
    ("channel_overhead", "bench.channels:phase"),
    ("isolation", "bench.isolation:phase"),
    ("memory", "bench.memory:phase"),
    ("scaling", "bench.scaling:phase"),
    ("timers", "bench.timers:phase"),
    ("workflows", "bench.workflows:phase"),
    ("admin", "bench.admin:phase"),
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


def _machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def main_async(args: argparse.Namespace) -> None:
    with DevStack() as stack:
        b = Bench(stack, args.events)
        console.print(f"dev stack up in {stack.started_in_s:.2f}s")
        b.add(Row("dev stack start-up", stack.started_in_s, "s"))
        for name, target in PHASES:
            if args.only and name not in args.only:
                continue
            fn = _load(target)
            if fn is None:
                console.print(f"[yellow]{name}: not available yet ({target} missing)[/]")
                continue
            console.rule(name)
            await fn(b)
    table = Table(title=f"Herald benchmarks ({b.events:,} events)")
    for col in ("benchmark", "value", "unit", "vs", "ratio", "goal", "note"):
        table.add_column(col)
    for r in b.rows:
        table.add_row(
            r.name,
            f"{r.value:,.2f}",
            r.unit,
            r.baseline,
            f"{r.ratio:.2f}" if r.ratio is not None else "",
            r.goal,
            r.note,
        )
    console.print(table)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": _machine(),
                "events": b.events,
                "rows": [r.__dict__ for r in b.rows],
                "extra": b.extra,
            },
            indent=2,
            default=str,
        )
    )
    console.print(f"wrote {RESULTS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=int(os.environ.get("HERALD_BENCH_EVENTS", "200000")))
    p.add_argument("--only", nargs="*", help="phases to run")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
