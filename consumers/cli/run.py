"""``herald run <process>``: every long-running Herald process, by name."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import sys
from typing import TYPE_CHECKING

from consumers.infra.settings import HeraldSettings
from consumers.runtime.cpu_priority import is_bulk, lower_bulk_priority
from consumers.runtime.lane_settings import for_lane
from schemas.errors import ConfigurationError
from schemas.models import Channel, Lane

if TYPE_CHECKING:  # the runtime (Kafka, PostgreSQL, Redis clients) loads in run_process, not at start
    from consumers.runtime.process import ProcessFactory

__all__ = ["PROCESSES", "register"]

log = logging.getLogger(__name__)


# name -> "module:function". Imported on demand so `herald run webhook` loads no FCM code.
PROCESSES: dict[str, str] = {
    "passthrough": "consumers.runtime.passthrough_process:build",
    "classifier": "consumers.classifier.process:build",
    "channel": "consumers.channel.process:build",
    "fallback": "consumers.fallback.process:build",
    "scheduler": "consumers.scheduler.process:build",
    "inbox-janitor": "consumers.inbox.janitor:build",
    "api": "consumers.api.process:build",
    "fanout": "consumers.fanout.process:build",
    "ledger": "consumers.ledger.process:build",
}


def _factory(name: str) -> ProcessFactory:
    try:
        target = PROCESSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PROCESSES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(
            f"unknown process {name!r}; {hint}choose one of: {', '.join(sorted(PROCESSES))}"
        ) from None
    module, _, attr = target.partition(":")
    factory: ProcessFactory = getattr(importlib.import_module(module), attr)
    return factory


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a Herald process until SIGTERM/SIGINT")
    p.add_argument("process", help=f"one of: {', '.join(sorted(PROCESSES))}")
    p.add_argument("--channel", choices=[c.value for c in Channel], help="channel process: which channel")
    p.add_argument(
        "--lane",
        default="priority",
        choices=[lane.value for lane in Lane],
        help="channel process (default priority)",
    )
    p.add_argument("--group", help="consumer group id (default: herald-<process>[-<channel>-<lane>])")
    p.add_argument("--target", help="passthrough: topic to forward to (default <prefix>.passthrough)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes in this container, supervised (Kafka consumers only; default 1)",
    )
    p.set_defaults(func=run_process)


# The API binds one port: scale it with replicas, not workers in one container.
_SINGLE_PROCESS = frozenset({"api"})


def worker_command(args: argparse.Namespace) -> list[str]:
    """The command line of one worker: this process, same options, no ``--workers``."""
    argv = [sys.executable, "-m", "consumers.cli.main", "run", args.process, "--lane", args.lane]
    for flag, value in (("--channel", args.channel), ("--group", args.group), ("--target", args.target)):
        if value is not None:
            argv += [flag, value]
    return argv


async def run_process(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.infra.resources import Resources
    from consumers.runtime.process import ProcessOptions, serve
    from consumers.runtime.workers import Supervisor

    factory = _factory(args.process)
    # Before any connection or worker: the threads and processes started later inherit it.
    lower_bulk_priority(args.process, args.lane, settings.runtime.bulk_nice)
    runtime = for_lane(settings.runtime, is_bulk(args.process, args.lane))
    if runtime is not settings.runtime:
        log.info(
            "bulk-lane process: fetch wait %d ms (HERALD_RUNTIME__BULK_FETCH_MAX_WAIT_MS)",
            runtime.fetch_max_wait_ms,
        )
        settings = settings.model_copy(update={"runtime": runtime})
    if args.workers != 1:
        if args.workers < 1:
            raise ConfigurationError(f"--workers must be at least 1, got {args.workers}")
        if args.process in _SINGLE_PROCESS:
            raise ConfigurationError(
                f"{args.process} runs as one process per container; scale it with replicas"
            )
        return await Supervisor(worker_command(args), args.workers, settings).run()
    resources = Resources(settings)
    try:
        options = ProcessOptions(channel=args.channel, lane=args.lane, group=args.group, target=args.target)
        spec = await factory(resources, options)

        async def on_stop() -> None:
            if spec.on_stop is not None:
                await spec.on_stop()
            await resources.close()

        return await serve(settings, spec.runners, spec.loops, on_stop=on_stop)
    except BaseException:
        await resources.close()
        raise
