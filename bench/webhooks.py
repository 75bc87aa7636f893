"""Webhook delivery throughput and signing cost.

``python -m bench.webhooks [--messages 6000] [--in-flight 200] [--endpoints 20]``

* deliveries/s: the real adapter (endpoint lookup in PostgreSQL, signing, SSRF-guarded pooled
  httpx client, statistics written back per delivery) with ``--in-flight`` deliveries in
  flight, to a local receiver running in a **separate process** (it verifies every signature
  with ``channels.webhook.signing.verify``), so the two do not share one interpreter.
* signing: the time of ``signing_headers`` per delivery (two active secrets, the realistic
  rotation worst case), measured inside the same run under load, and in a tight loop.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
import uuid
from datetime import UTC, datetime

import channels.webhook.http as webhook_module
from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookAdapter, WebhookSettings
from channels.webhook.signing import generate_secret, signing_headers
from consumers.devstack import DevStack
from consumers.infra.db import connect_pool, migrate
from tests.integration.webhook_helpers import webhook_message


def _receiver_process(port_out: multiprocessing.Queue, secrets: dict[str, list[str]]) -> None:  # type: ignore[type-arg]
    from tests.fakes.webhook_receiver import WebhookReceiver

    async def main() -> None:
        r = WebhookReceiver()
        await r.start()
        for path, s in secrets.items():
            r.endpoint(path, s)
        port_out.put(r.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(messages: int, in_flight: int, n_endpoints: int) -> None:
    with DevStack() as stack:
        pool = await connect_pool(stack.database_url, max_size=20)
        await migrate(pool)
        store = EndpointStore(pool)
        secrets = {f"/hooks/b{i}": [generate_secret(), generate_secret()] for i in range(n_endpoints)}
        ctx = multiprocessing.get_context("spawn")
        q: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        proc = ctx.Process(target=_receiver_process, args=(q, secrets), daemon=True)
        proc.start()
        port = q.get(timeout=30)
        ids = []
        now = datetime.now(UTC)
        for path, (new, old) in secrets.items():
            ep = await store.add(
                "bench",
                f"http://127.0.0.1:{port}{path}",
                now=now,
                endpoint_id="ep_" + uuid.uuid4().hex[:12],
                secret=old,
            )
            await store.rotate_secret(ep.endpoint_id, now=now, grace_s=3600, new_secret=new)  # 2 signatures
            ids.append(ep.endpoint_id)

        sign_ns: list[int] = []

        def timed_signing(*args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.perf_counter_ns()
            try:
                return signing_headers(*args, **kwargs)
            finally:
                sign_ns.append(time.perf_counter_ns() - t)

        webhook_module.signing_headers = timed_signing  # type: ignore[attr-defined]  # bench instrumentation
        adapter = WebhookAdapter(
            store, WebhookSettings(allow_hosts=("127.0.0.1",), max_connections_per_endpoint=in_flight)
        )
        batch = [
            webhook_message(
                ids[i % len(ids)],
                payload={"invoice": f"inv_{i}", "amount": 1299, "currency": "EUR", "lines": list(range(20))},
            )
            for i in range(messages)
        ]
        slots = asyncio.Semaphore(in_flight)
        latencies: list[float] = []
        statuses: dict[str, int] = {}

        async def one(m) -> None:  # type: ignore[no-untyped-def]
            async with slots:
                t = time.perf_counter()
                o = await adapter.deliver(m, adapter.render(m), idempotency_key=m.idempotency_key)
                latencies.append(time.perf_counter() - t)
                statuses[o.status] = statuses.get(o.status, 0) + 1

        await asyncio.gather(*(one(m) for m in batch[: min(500, messages)]))  # warm the pool
        latencies.clear()
        sign_ns.clear()
        statuses.clear()
        load = os.getloadavg()[0]
        started, cpu0, recv0 = time.perf_counter(), time.process_time(), _cpu_s(proc.pid or 0)
        await asyncio.gather(*(one(m) for m in batch))
        elapsed = time.perf_counter() - started
        cpu, recv_cpu = time.process_time() - cpu0, _cpu_s(proc.pid or 0) - recv0
        await adapter.close()
        proc.terminate()
        await pool.close()

    body = webhook_module.render_body(batch[0])
    loop_ns = []
    for _ in range(50_000):
        t = time.perf_counter_ns()
        signing_headers(next(iter(secrets.values())), batch[0].idempotency_key, 1_764_072_000, body)
        loop_ns.append(time.perf_counter_ns() - t)
    print(
        f"deliveries: {messages} in {elapsed:.2f}s = {messages / elapsed:,.0f}/s with {in_flight} in flight "
        f"to {n_endpoints} endpoints; statuses {statuses}"
    )
    print(
        f"CPU: sender {cpu / elapsed:.0%} of a core ({cpu / messages * 1e6:.0f} us/delivery), "
        f"receiver {recv_cpu / elapsed:.0%}; load average {load:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"delivery latency p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {_pct(latencies, 0.99) * 1000:.1f} ms"
    )
    print(
        f"signing ({len(body)} B body, 2 secrets) under load: p50 {statistics.median(sign_ns) / 1000:.1f} us, "
        f"p99 {_pct([float(x) for x in sign_ns], 0.99) / 1000:.1f} us"
    )
    print(
        f"signing, tight loop: p50 {statistics.median(loop_ns) / 1000:.1f} us, "
        f"p99 {_pct([float(x) for x in loop_ns], 0.99) / 1000:.1f} us"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=6000)
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--endpoints", type=int, default=20)
    a = p.parse_args()
    asyncio.run(run(a.messages, a.in_flight, a.endpoints))


if __name__ == "__main__":
    main()
