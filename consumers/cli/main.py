"""``herald``: run Herald's processes and operate it."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from pydantic import ValidationError

from consumers.cli import commands, dev, doctor, endpoints, receipts, run, suppressions, tail, token, why
from consumers.cli.errors import EXPECTED
from consumers.infra.settings import HeraldSettings

__all__ = ["build_parser", "main"]

# Modules that add subcommands; each has register(subparsers).
_COMMAND_MODULES: list[ModuleType] = [
    run,
    commands,
    tail,
    dev,
    why,
    endpoints,
    suppressions,
    doctor,
    receipts,
    token,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = HeraldSettings()
    except ValidationError as exc:
        print(f"herald: error: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    try:
        result = args.func(settings, args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except EXPECTED as exc:
        print(f"herald: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
