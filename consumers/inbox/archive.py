"""Monthly partitions of ``herald_inbox_archive``: which one a moment belongs to, which have expired. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["ARCHIVE_TABLE", "Partition", "expired_partitions", "partition_for"]

ARCHIVE_TABLE = "herald_inbox_archive"
_NAME = re.compile(rf"^{ARCHIVE_TABLE}_y(\d{{4}})m(\d{{2}})$")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: datetime  # inclusive, first instant of the month (UTC)
    end: datetime  # exclusive, first instant of the next month


def _month(year: int, month: int) -> Partition:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Partition(f"{ARCHIVE_TABLE}_y{year:04d}m{month:02d}", start, end)


def partition_for(at: datetime) -> Partition:
    """The partition holding rows archived at ``at``."""
    utc = at.astimezone(UTC)
    return _month(utc.year, utc.month)


def expired_partitions(names: Iterable[str], now: datetime, retention_days: int) -> list[str]:
    """Partitions whose every row was archived more than ``retention_days`` ago (0: keep all)."""
    if retention_days <= 0:
        return []
    cutoff = now - timedelta(days=retention_days)
    out = []
    for name in names:
        m = _NAME.match(name)
        if m is not None and _month(int(m[1]), int(m[2])).end <= cutoff:
            out.append(name)
    return sorted(out)
