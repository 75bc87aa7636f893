"""Reading a recipients file (CSV or NDJSON) in batches, with the line number of every row.

CSV columns: ``id,email,phone,locale,timezone,quiet_start,quiet_end,properties,preferences``
(only ``id`` is required; ``properties`` and ``preferences`` hold JSON; an empty cell is an
absent field). NDJSON: one object per line, shaped as a row of ``POST /v1/recipients:batch``.
Line numbers are the file's own (the CSV header is line 1), so an import resumes after the
last line it committed and an error report points at the line to fix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Line", "count_lines", "csv_object", "detect_format", "read_batches"]

_JSON_COLUMNS = ("properties", "preferences")
_QUIET = ("quiet_start", "quiet_end")


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based line of the file where the row ends
    row: Any  # the decoded object, or an error message (str) when the line is not valid


def detect_format(path: Path) -> str:
    return "csv" if path.suffix.lower() == ".csv" else "ndjson"


def csv_object(cells: dict[str, str]) -> dict[str, Any] | str:
    """One CSV record as a batch row, or why it cannot be one."""
    out: dict[str, Any] = {}
    for name, value in cells.items():
        if name is None or value is None or value == "":
            continue
        if name in _JSON_COLUMNS:
            try:
                out[name] = json.loads(value)
            except ValueError:
                return f"column {name}: not JSON"
        elif name not in _QUIET:
            out[name] = value
    start, end = cells.get("quiet_start") or "", cells.get("quiet_end") or ""
    if start or end:
        out["quiet_hours"] = {"start": start, "end": end}
    return out


def _ndjson(f: TextIO, skip_through: int) -> Iterator[Line]:
    for number, text in enumerate(f, start=1):
        if number <= skip_through or not text.strip():
            continue
        try:
            yield Line(number, json.loads(text))
        except ValueError as exc:
            yield Line(number, f"not JSON: {exc}")


def _csv(f: TextIO, skip_through: int) -> Iterator[Line]:
    reader = csv.DictReader(f)
    for cells in reader:
        if reader.line_num > skip_through:
            yield Line(reader.line_num, csv_object(cells))


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read_batches(path: Path, fmt: str, *, after_line: int, size: int) -> Iterator[list[Line]]:
    """Lists of up to ``size`` rows past ``after_line``, in file order."""
    with path.open(encoding="utf-8", newline="" if fmt == "csv" else None) as f:
        lines = _csv(f, after_line) if fmt == "csv" else _ndjson(f, after_line)
        batch: list[Line] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
