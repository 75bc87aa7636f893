"""``herald``: run Herald's processes and operate it."""

from __future__ import annotations

import argparse
import difflib
import inspect
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from consumers.cli import (
    commands,
    console,
    dev,
    dlq,
    doctor,
    endpoints,
    keys,
    receipts,
    recipients,
    routes,
    run,
    suppressions,
    tail,
    templates,
    token,
    why,
)
from consumers.cli.errors import EXPECTED
from consumers.infra.settings import load_settings

__all__ = ["build_parser", "main"]

# Modules that add subcommands; each has register(subparsers). They import their clients inside
# their handlers, so building this parser (every command, --help) loads none of them.
_COMMAND_MODULES: list[ModuleType] = [
    run,
    commands,
    tail,
    dev,
    why,
    dlq,
    console,
    endpoints,
    suppressions,
    doctor,
    receipts,
    token,
    templates,
    keys,
    recipients,
    routes,
]


class _Parser(argparse.ArgumentParser):
    """argparse that answers a mistyped command with the closest one (``herald tial`` → tail)."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        choices = action.choices
        if choices is not None and isinstance(value, str) and value not in choices:
            close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
            if close:
                what = "command" if isinstance(action, argparse._SubParsersAction) else action.dest
                self.error(f"unknown {what} {value!r}; did you mean {close[0]!r}?")
        super()._check_value(action, value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="herald", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from consumers.runtime import event_loop

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except EXPECTED as exc:
        _error(exc)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    # One INFO line per HTTP request (providers, the supervisor's scrapes of its workers) drowns the log.
    logging.getLogger("httpx").setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    try:
        result = args.func(settings, args)
        if inspect.iscoroutine(result):
            result = event_loop.run(result, settings.runtime.event_loop)
        return int(result or 0)
    except EXPECTED as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        return 130


def _error(exc: BaseException) -> None:
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"herald: error: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
