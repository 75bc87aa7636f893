"""How long tansu holds a fetch, and what an idle consumer costs, by ``fetch_max_wait_ms``.

``python -m bench.fetch_wait`` starts its own embedded broker (tansu, memory engine) and, for each
wait and partition count, one consumer and one producer: a record every 50 ms, each on the next
partition, the latency from just before the produce to the consumer's ``getmany`` returning it.
Then, with nothing to read, one consumer's CPU and tansu's per second of wall time. Tansu reads
the requested partitions, sleeps half the time left if it found nothing and reads again until the
wait is spent (docs/benchmarks.md, "Tansu and the fetch wait"): a record should wait up to half
the wait, whatever the number of partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cost import proc_cpu_s
from consumers.devstack import DevStack

__all__ = ["idle_cost", "latency"]

GAP_S = 0.05  # between records: well apart from each other, not in step with the waits measured


async def _topic(boot: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=boot)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _joined(boot: str, topic: str, wait_ms: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=boot, group_id=topic, fetch_max_wait_ms=wait_ms, enable_auto_commit=False
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100)
    await asyncio.sleep(1)  # past the first fetches' position look-ups
    return consumer


async def latency(boot: str, partitions: int, wait_ms: int, n: int = 60) -> dict[str, float]:
    """Produce → consume latency (ms): p50, p90 and max of ``n`` records."""
    topic = f"wait-{partitions}-{wait_ms}-{time.time_ns()}"
    await _topic(boot, topic, partitions)
    consumer = await _joined(boot, topic, wait_ms)
    producer = AIOKafkaProducer(bootstrap_servers=boot, linger_ms=0)
    await producer.start()
    seen: list[float] = []

    async def consume() -> None:
        while len(seen) < n:
            got = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            seen.extend((now - float(r.value or b"0")) * 1000 for rs in got.values() for r in rs)

    reader = asyncio.create_task(consume())
    try:
        for i in range(n):
            await producer.send_and_wait(topic, str(time.perf_counter()).encode(), partition=i % partitions)
            await asyncio.sleep(GAP_S)
        await asyncio.wait_for(reader, timeout=30 + wait_ms / 1000)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    seen.sort()
    return {"p50": statistics.median(seen), "p90": seen[int(0.9 * len(seen))], "max": seen[-1]}


async def idle_cost(boot: str, broker_pid: int, wait_ms: int, seconds: float = 15.0) -> dict[str, float]:
    """CPU ms per second of one idle consumer on 4 partitions (polling as the runner does) and of the broker."""
    topic = f"idle-{wait_ms}-{time.time_ns()}"
    await _topic(boot, topic, 4)
    consumer = await _joined(boot, topic, wait_ms)

    def own() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    try:
        cpu0, broker0, t0 = own(), proc_cpu_s(broker_pid), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await consumer.getmany(timeout_ms=200, max_records=500)
        wall = time.perf_counter() - t0
        return {
            "consumer": (own() - cpu0) / wall * 1000,
            "broker": (proc_cpu_s(broker_pid) - broker0) / wall * 1000,
        }
    finally:
        await consumer.stop()


async def main(waits: list[int], partitions: list[int]) -> None:
    with DevStack(with_moto=False, honour_env=False) as stack:  # its own broker: its CPU is read
        kafka = stack.services["kafka"]
        assert kafka.proc is not None
        for wait in waits:
            for parts in partitions:
                lat = await latency(stack.kafka, parts, wait)
                print(
                    f"wait {wait:>4} ms, {parts} partitions: "
                    + ", ".join(f"{k} {v:.1f} ms" for k, v in lat.items())
                )
        for wait in waits:
            cost = await idle_cost(stack.kafka, kafka.proc.pid, wait)
            print(
                f"wait {wait:>4} ms, idle: consumer {cost['consumer']:.1f}, broker {cost['broker']:.1f} ms CPU/s"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--waits", default="10,20,100,250,500", help="fetch_max_wait_ms values, comma-separated"
    )
    parser.add_argument("--partitions", default="1,8", help="partition counts, comma-separated")
    args = parser.parse_args()
    asyncio.run(main([int(w) for w in args.waits.split(",")], [int(p) for p in args.partitions.split(",")]))
