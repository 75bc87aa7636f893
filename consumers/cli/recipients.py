"""``herald recipients import FILE``: load recipients from CSV or NDJSON into PostgreSQL.

Batches of ``--batch`` rows are written in one transaction each (the same code as
``POST /v1/recipients:batch``). After each batch the last committed line goes to
``FILE.progress``; a re-run resumes after it (``--restart`` starts over, ``--from-line N``
starts after line N). Invalid rows go to ``FILE.errors.ndjson`` as ``{"line", "id", "errors"}``
and the import goes on.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from consumers.api.admin.import_file import Line
    from consumers.api.admin.recipients_bulk import BatchRow

__all__ = ["import_recipients", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("recipients", help="bulk recipient operations")
    rsub = p.add_subparsers(dest="recipients_cmd", required=True)
    i = rsub.add_parser("import", help="import recipients from a CSV or NDJSON file (resumable)")
    i.add_argument("file", type=Path)
    i.add_argument(
        "--tenant", default="", help="the tenant the recipients belong to (default: the default tenant '')"
    )
    i.add_argument("--format", choices=["csv", "ndjson"], default=None, help="default: by file extension")
    i.add_argument("--batch", type=int, default=1000, help="rows per transaction (default 1000)")
    i.add_argument(
        "--from-line", type=int, default=None, help="start after this line (overrides FILE.progress)"
    )
    i.add_argument("--restart", action="store_true", help="ignore FILE.progress and start from the top")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=import_recipients)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _start_line(args: argparse.Namespace, progress_file: Path) -> int:
    if args.from_line is not None:
        return int(args.from_line)
    if args.restart or not progress_file.exists():
        return 0
    return int(json.loads(progress_file.read_text())["line"])


def _split(lines: list[Line], max_props: int) -> tuple[list[BatchRow], list[dict[str, Any]]]:
    from consumers.api.admin.recipients_bulk import BatchRow, parse_row

    rows: list[BatchRow] = []
    errors: list[dict[str, Any]] = []
    for line in lines:
        parsed = parse_row(line.row, max_props) if not isinstance(line.row, str) else None
        if isinstance(parsed, BatchRow):
            rows.append(parsed)
            continue
        ident = line.row.get("id") if isinstance(line.row, dict) else None
        reasons = (
            [{"loc": "", "msg": line.row}]
            if parsed is None
            else [{"loc": e.loc, "msg": e.msg} for e in parsed]
        )
        errors.append({"line": line.number, "id": ident, "errors": reasons})
    return rows, errors


class _Sidecars:
    """FILE.progress (the last committed line) and FILE.errors.ndjson (the per-row report)."""

    def __init__(self, path: Path, *, append: bool) -> None:
        self.progress = _sidecar(path, ".progress")
        self.errors_path = _sidecar(path, ".errors.ndjson")
        self._report = self.errors_path.open("a" if append else "w")

    def committed(self, line: int, errors: list[dict[str, Any]]) -> None:
        for e in errors:
            self._report.write(json.dumps(e) + "\n")
        self._report.flush()
        self.progress.write_text(json.dumps({"line": line}))

    def close(self) -> None:
        self._report.close()


def import_recipients(settings: HeraldSettings, args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """The blocking preparation (file checks, line count) here; the import itself is a coroutine."""
    from consumers.api.admin.import_file import count_lines

    path: Path = args.file
    if not path.is_file():
        raise ConfigurationError(f"no such file: {path}")
    after = _start_line(args, _sidecar(path, ".progress"))
    return _import(settings, args, path, after, count_lines(path))


async def _import(
    settings: HeraldSettings, args: argparse.Namespace, path: Path, after: int, total: int
) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from consumers.api.admin.import_file import detect_format, read_batches
    from consumers.api.admin.recipients_bulk import put_many
    from consumers.infra.db import connect_pool, migrate

    fmt = args.format or detect_format(path)
    pool = await connect_pool(settings.database_url, max_size=2)
    counts = {"created": 0, "updated": 0, "invalid": 0}
    started = time.monotonic()
    sidecars = _Sidecars(path, append=after > 0)
    columns = (
        TextColumn("[bold]import"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeRemainingColumn(),
    )
    try:
        await migrate(pool)
        with Progress(*columns, disable=args.quiet) as bar:
            task = bar.add_task("import", total=total, completed=after)
            for lines in read_batches(path, fmt, after_line=after, size=args.batch):
                rows, errors = _split(lines, settings.admin.recipient_properties_max_bytes)
                counts["invalid"] += len(errors)
                async with pool.acquire() as conn:
                    results = await put_many(conn, args.tenant, rows) if rows else []
                for res in results:
                    counts[res.status] += 1
                after = lines[-1].number
                sidecars.committed(after, errors)  # committed through this line
                bar.update(task, completed=after)
    finally:
        sidecars.close()
        await pool.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    done = sum(counts.values())
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    report = f"; errors in {sidecars.errors_path}" if counts["invalid"] else ""
    print(f"{done} rows in {elapsed:.1f}s ({done / elapsed:.0f} rows/s): {summary}{report}")
    return 0
