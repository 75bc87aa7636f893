"""The admin API's figures: recipient import rows/s, topic fan-out subscribers/s, critical p99
while a broadcast drains, and ``POST /v1/events`` events/s with its p99.

``python -m bench.admin`` or the ``admin`` phase of bench.run. Sizes come from the environment
(defaults are the issue's: 1M rows, a 1M-subscriber broadcast) so a shared machine can run it
smaller: ``HERALD_BENCH_IMPORT_ROWS``, ``HERALD_BENCH_BROADCAST``, or all of them with bench.run's
``--scale`` (``HERALD_BENCH_SCALE``).

* import: ``herald recipients import`` (a real process) on an NDJSON file; its own rows/s.
* fan-out: :class:`consumers.fanout.handler.Fanout` in this process against the stack, copies/s.
* isolation: the real processes (classifier, ``classifier --lane bulk``, ``fanout``, priority
  channel consumers with dry-run providers); critical events at 50/s while a broadcast fans out
  and its copies are classified, the critical stream running until the fan-out has finished;
  latency = ``sent`` outcome time − event time, as bench.isolation.
* events API: ``herald run api``; concurrent clients POST one event per request for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.common import sized
from bench.hops import hop_latencies
from bench.isolation import GOAL, _by_tag, _critical_stream, _outcomes, _pct, _seed
from bench.procs import HeraldProcs, committed_total
from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.keys import Scope
from consumers.devstack import DevStack
from consumers.devstack.processes import free_port
from consumers.emitter import Emitter, build_event
from consumers.fanout.handler import Fanout
from consumers.infra.db import connect_pool, migrate
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import DomainEvent

__all__ = ["phase"]

ROOT = Path(__file__).resolve().parents[1]
IMPORT_ROWS = 1_000_000  # HERALD_BENCH_IMPORT_ROWS, times the run's --scale
BROADCAST = 1_000_000  # HERALD_BENCH_BROADCAST, times the run's --scale
_LOGS = Path(tempfile.gettempdir())


def _write_ndjson(path: Path, rows: int, prefix: str) -> None:
    with path.open("w") as f:
        for i in range(rows):
            f.write(
                json.dumps(
                    {
                        "id": f"{prefix}{i:08d}",
                        "email": f"u{i}@example.com",
                        "timezone": "Europe/Lisbon",
                        "properties": {"plan": "pro", "n": i},
                    }
                )
                + "\n"
            )


async def import_rate(stack: DevStack, rows: int) -> dict[str, Any]:
    """rows/s of ``herald recipients import`` (the CLI's own count, file parsing included)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipients.ndjson"
        await asyncio.to_thread(_write_ndjson, path, rows, f"imp{uuid.uuid4().hex[:6]}-")
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumers.cli.main", "recipients", "import", str(path), "--quiet",
            cwd=ROOT, env={**os.environ, **stack.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        wall = time.perf_counter() - t0
    text = out.decode()
    m = re.search(r"\((\d+) rows/s\)", text)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"import failed: {text} {err.decode()[-2000:]}")
    return {"rows": rows, "rows_per_s": float(m.group(1)), "wall_s": wall}


async def _seed_topic(pool: asyncpg.Pool, tenant: str, topic: str, n: int) -> None:
    await pool.execute("INSERT INTO herald_topics (tenant, key) VALUES ($1, $2)", tenant, topic)
    step = 100_000
    for start in range(0, n, step):
        await pool.copy_records_to_table(
            "herald_topic_subscribers",
            records=[(tenant, topic, f"sub{i:08d}") for i in range(start, min(n, start + step))],
            columns=["tenant", "topic", "user_id"],
        )


def _broadcast(tenant: str, topic: str, event_type: str = "marketing.weekly") -> DomainEvent:
    event = build_event(event_type, user_id="-", tenant=tenant, data={"issue": 1})
    event.user_id, event.topic = "", topic
    return event


async def fanout_rate(s: HeraldSettings, n: int) -> dict[str, Any]:
    """Copies/s of one broadcast to ``n`` subscribers, produced and checkpointed (acks=all)."""
    topics = Topics(s.topic_prefix)
    await create_topics(s, [topics.fanout])
    pool = await connect_pool(s.database_url)
    producer = make_producer(s)
    await producer.start()
    try:
        await migrate(pool)
        tenant = f"fan-{uuid.uuid4().hex[:8]}"
        await _seed_topic(pool, tenant, "all", n)
        fanout = Fanout(pool, producer, default_codec(), topics.fanout, chunk=s.fanout_chunk)
        t0 = time.perf_counter()
        produced = await fanout.fan_out(_broadcast(tenant, "all"))
        seconds = time.perf_counter() - t0
    finally:
        await producer.stop()
        await pool.close()
    return {"subscribers": produced, "seconds": seconds, "per_s": produced / seconds}


async def _fanned_out(
    s: HeraldSettings, pool: asyncpg.Pool, event_id: str, timeout: float
) -> tuple[int, float, int]:
    """Wait until the broadcast is fanned out (its cursor finished); return (copies, seconds,
    copies the bulk-lane classifier had committed by then)."""
    t0 = time.monotonic()
    while time.monotonic() < t0 + timeout:
        row = await pool.fetchrow(
            "SELECT fanned, finished_at FROM herald_fanout_cursors WHERE event_id = $1", event_id
        )
        if row is not None and row["finished_at"] is not None:
            seconds = time.monotonic() - t0
            classified = await committed_total(s, "herald-classifier-bulk", Topics(s.topic_prefix).fanout)
            return int(row["fanned"]), seconds, classified
        await asyncio.sleep(0.5)
    raise TimeoutError(f"broadcast {event_id} not fanned out in {timeout:.0f}s")


async def critical_during_broadcast(b: Any, n: int, seconds: float = 20.0) -> dict[str, Any]:
    """Critical p99 while one broadcast to ``n`` subscribers fans out (its copies being classified
    meanwhile): the critical stream runs from the broadcast until the fan-out has finished (at
    least ``seconds``)."""
    s: HeraldSettings = b.settings()
    topics = Topics(s.topic_prefix)
    await create_topics(s, topics.all())
    await _seed(s)
    pool = await connect_pool(s.database_url)
    tenant = f"iso-{uuid.uuid4().hex[:8]}"
    try:
        await _seed_topic(pool, tenant, "all", n)
        env = {"HERALD_CHANNEL__DRY_RUN": "true", "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100"}
        with HeraldProcs(b.stack, s, env) as procs:
            for name, argv in [
                ("classifier", ["classifier"]),
                ("classifier-bulk", ["classifier", "--lane", "bulk"]),
                ("fanout", ["fanout"]),
                ("email-priority", ["channel", "--channel", "email", "--lane", "priority"]),
                ("sms-priority", ["channel", "--channel", "sms", "--lane", "priority"]),
                ("push-priority", ["channel", "--channel", "push", "--lane", "priority"]),
            ]:
                procs.start(f"admin-{name}", argv)
            await procs.wait_ready()
            warmup = await _critical_stream(s, 3, "warmup")
            event = _broadcast(tenant, "all")
            done = asyncio.Event()
            timeout = b.timeout(n, floor=900)
            t0 = time.monotonic()
            stream = asyncio.create_task(_critical_stream(s, timeout, "burst", until=done))
            try:
                async with Emitter(s.kafka_bootstrap_servers, topics.events) as emit:
                    await emit.emit_event(event)
                copies, fanned_s, classified = await _fanned_out(s, pool, event.event_id, timeout)
                await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
            finally:
                done.set()
                loud = await stream
            during = time.monotonic() - t0
            outcomes = await _outcomes(s, 3 * (warmup + loud), timeout=b.timeout(n, floor=120))
            hops = await hop_latencies(s, outcomes)
    finally:
        await pool.close()
    values = _by_tag(outcomes).get("burst", [])
    return {
        "subscribers": n,
        "copies": copies,
        "fanned_out_s": fanned_s,
        "classified_by_then": classified,
        "window_s": during,
        "n": len(values),
        "p50_ms": statistics.median(values) if values else float("nan"),
        "p99_ms": _pct(values, 0.99) if values else float("nan"),
        "max_ms": max(values) if values else float("nan"),
        "hop_p99_ms": {h: _pct(v, 0.99) for h, v in hops.get("burst", {}).items() if v},
    }


async def _post_level(url: str, token: str, concurrency: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def client_loop(client: httpx.AsyncClient, c: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < stop_at:
            body = {"type": "payment_receipt", "user_id": f"api-{c}-{i % 100}", "data": {"amount": "1.00"}}
            t = time.perf_counter()
            r = await client.post("/v1/events", json=body, headers=headers)
            lat.append((time.perf_counter() - t) * 1000)
            errors += r.status_code != 202
            i += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client, c) for c in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "events_per_s": len(lat) / wall,
        "p50_ms": statistics.median(lat),
        "p99_ms": _pct(lat, 0.99),
        "errors": errors,
    }


async def events_api(stack: DevStack, seconds: float = 5.0) -> dict[str, Any]:
    pepper = secrets.token_urlsafe(32)
    prefix = f"ev{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": prefix,
        "HERALD_API__PORT": str(port),
        "HERALD_API__HOST": "127.0.0.1",
        "HERALD_API__JWT_SECRET": secrets.token_urlsafe(32),
        "HERALD_ADMIN__KEY_PEPPER": pepper,
        "HERALD_API__RATE_LIMIT_REQUESTS": "0",
        "HERALD_METRICS_PORT": "0",
    }
    pool = await connect_pool(stack.database_url)
    try:
        await migrate(pool)
        key = await KeyStore(pool, pepper.encode()).create("bench", (Scope.EMIT,))
    finally:
        await pool.close()
    log = (_LOGS / "herald-bench-events-api.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumers.cli.main", "run", "api",
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    levels = []
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(600):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        await _post_level(url, key.token, 4, 1.0)  # warm-up
        for concurrency in (1, 4, 16, 32):
            levels.append(await _post_level(url, key.token, concurrency, seconds))
            print(f"  POST /v1/events c={concurrency}: {levels[-1]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        log.close()
    best = max(levels, key=lambda lv: lv["events_per_s"])
    return {"levels": levels, "best": best}


async def phase(b: Any) -> None:
    """For bench.run: ``("admin", "bench.admin:phase")``."""
    from bench.run import Row

    rows = sized("HERALD_BENCH_IMPORT_ROWS", IMPORT_ROWS, b.scale)
    broadcast = sized("HERALD_BENCH_BROADCAST", BROADCAST, b.scale)
    imp = await import_rate(b.stack, rows)
    b.add(Row("recipients import", imp["rows_per_s"], "rows/s", note=f"{imp['rows']:,} rows NDJSON, CLI"))
    fan = await fanout_rate(b.settings(), broadcast)
    b.add(
        Row(
            "topic fan-out",
            fan["per_s"],
            "subscribers/s",
            note=f"{fan['subscribers']:,} subscribers, acks=all",
        )
    )
    iso = await critical_during_broadcast(b, broadcast)
    b.add(
        Row(
            "critical e2e p99 during a broadcast",
            iso["p99_ms"],
            "ms",
            goal=GOAL,
            note=f"{iso['subscribers']:,} subscribers: {iso['copies']:,} copies fanned out in "
            f"{iso['fanned_out_s']:.0f} s ({iso['classified_by_then']:,} classified by then); "
            f"p50 {iso['p50_ms']:.0f} ms, max {iso['max_ms']:.0f} ms, n={iso['n']}; p99 by hop: "
            + ", ".join(f"{h} {ms:.0f} ms" for h, ms in iso["hop_p99_ms"].items()),
        )
    )
    api = await events_api(b.stack)
    best = api["best"]
    b.add(
        Row(
            "POST /v1/events",
            best["events_per_s"],
            "events/s",
            note=f"one event per request, c={best['concurrency']}, p99 {best['p99_ms']:.1f} ms",
        )
    )
    b.extra["admin"] = {"import": imp, "fanout": fan, "isolation": iso, "events_api": api}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", nargs="*", default=["import", "fanout", "isolation", "events"])
    args = p.parse_args()

    async def run() -> None:
        from bench.run import Bench

        with DevStack() as stack:
            b = Bench(stack, 0)
            rows = sized("HERALD_BENCH_IMPORT_ROWS", IMPORT_ROWS)
            broadcast = sized("HERALD_BENCH_BROADCAST", BROADCAST)
            if "import" in args.only:
                print("import", await import_rate(stack, rows))
            if "fanout" in args.only:
                print("fanout", await fanout_rate(b.settings(), broadcast))
            if "isolation" in args.only:
                print("isolation", await critical_during_broadcast(b, broadcast))
            if "events" in args.only:
                print("events", (await events_api(stack))["best"])

    asyncio.run(run())


if __name__ == "__main__":
    main()
