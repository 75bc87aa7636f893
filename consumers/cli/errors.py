"""Expected failures: printed as one line, never as a traceback."""

from __future__ import annotations

from consumers.db import DatabaseUnavailable
from consumers.kafka import KafkaUnavailable

__all__ = ["EXPECTED", "CliError"]


class CliError(Exception):
    """A wrong argument or a state the user can fix."""


EXPECTED: tuple[type[BaseException], ...] = (CliError, KafkaUnavailable, DatabaseUnavailable, ConnectionError)
