"""Expected failures: printed as one line, never as a traceback."""

from __future__ import annotations

from schemas.errors import ConfigurationError, DependencyUnavailable

__all__ = ["EXPECTED"]

# A configuration mistake or a server that is not there: the user can fix both, so no traceback.
EXPECTED: tuple[type[BaseException], ...] = (ConfigurationError, DependencyUnavailable, ConnectionError)
