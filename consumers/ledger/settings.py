"""Settings of the activity store (``HERALD_LEDGER__*``), declared beside the ledger."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["LedgerSettings"]


class LedgerSettings(BaseModel, frozen=True):
    """The activity store (``herald run ledger``) that the console, ``herald why`` and ``herald dlq`` read."""

    retention_days: int = Field(
        30, ge=1, description="Days of activity kept; older day partitions are dropped whole."
    )
    retention_interval_s: float = Field(
        3600.0, gt=0, description="How often the ledger drops expired partitions and makes the next day's."
    )
