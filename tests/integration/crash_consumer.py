"""A pass-through consumer process for crash tests, run as ``python -m tests.integration.crash_consumer``.

Modes:
  block-commit  produce and wait for acks as usual, then hang in commit (to be SIGKILLed there)
  slow          each batch takes ``--delay`` seconds in the handler (to be SIGTERMed mid-batch)
  normal        plain pass-through
A marker file is written when the interesting point is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import Incoming, Result
from consumers.runtime.kafka import make_producer
from consumers.runtime.passthrough import PassThrough
from consumers.runtime.process import serve
from consumers.runtime.runner import Runner
from schemas.models import DomainEvent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["block-commit", "slow", "normal"], required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--marker", type=Path, required=True)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args()
    settings = HeraldSettings(metrics_port=0, metrics_host="127.0.0.1")  # from env: stack URLs, grace
    return asyncio.run(_run(settings, args))


class _BlockingCommit(AIOKafkaConsumer):  # type: ignore[misc]
    marker: Path

    async def commit(self, offsets: Any = None) -> None:
        self.marker.write_text("produced, not committed")
        await asyncio.Event().wait()  # never commits: the test kills us here


class _Slow(PassThrough):
    def __init__(self, target: str, delay: float, marker: Path) -> None:
        super().__init__(target)
        self.delay = delay
        self.marker = marker

    async def handle(self, batch: Sequence[Incoming[tuple[DomainEvent, bytes]]]) -> Sequence[Result]:
        self.marker.write_text(f"handling {len(batch)}")
        await asyncio.sleep(self.delay)  # simulated slow work (a test double of a slow provider)
        return await super().handle(batch)


async def _run(settings: HeraldSettings, args: argparse.Namespace) -> int:
    producer = make_producer(settings)
    await producer.start()
    handler: PassThrough = PassThrough(args.target)
    factory: Any = AIOKafkaConsumer
    if args.mode == "block-commit":
        _BlockingCommit.marker = args.marker
        factory = _BlockingCommit
    elif args.mode == "slow":
        handler = _Slow(args.target, args.delay, args.marker)
    runner = Runner(
        handler,
        topics=[args.source],
        group_id=args.group,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime,
        consumer_factory=factory,
    )
    try:
        return await serve(settings, [runner])
    finally:
        await producer.stop()


if __name__ == "__main__":
    sys.exit(main())
