"""Whose fault is a PostgreSQL or Redis error: the record's, or the server's? Pure.

Every place a consumer or an adapter calls PostgreSQL or Redis asks these two functions, so
that "this record is bad" never looks like "the dependency is down":

* ``"record"``: the statement was refused because of the values it carried (text PostgreSQL
  cannot store, a number or a date out of range, a CHECK, an index row too large, a string
  that cannot be encoded). Trying again can never succeed: dead letter or ``failed_permanent``.
* ``"dependency"``: the server did not answer, refused connections, timed out, is starting
  up, read-only or out of memory, or anything not known to be about the values. Retry, pause.

Unknown errors count as ``"dependency"``: pausing is the safe default, and the runtime's poison
net (``consumers.runtime.isolate``) still isolates a record that fails while the server answers.
"""

from __future__ import annotations

from typing import Literal

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base
from redis import exceptions as redis_errors

__all__ = ["PG_CALL_ERRORS", "PG_ERRORS", "PG_OUTAGES", "Blame", "classify_pg_error", "classify_redis_error"]

Blame = Literal["record", "dependency"]

# What a PostgreSQL call can raise because of the server or the connection: retry, pause.
# InternalClientError is asyncpg's state machine when the server shuts down mid-COMMIT
# ("cannot switch to state 15; another operation is in progress"): an outage too.
PG_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

# Everything a PostgreSQL call can raise that is about the call, outage or refused values:
# catch these, then ask :func:`classify_pg_error` whose fault it was.
PG_ERRORS: tuple[type[BaseException], ...] = (*PG_OUTAGES, asyncpg.PostgresError)

# SQLSTATE classes (the first two characters) caused by the values a statement carries.
_PG_RECORD_CLASSES: dict[str, str] = {
    "22": "data exception: invalid text, out-of-range number or date, bad encoding",
    "23": "integrity constraint violation: CHECK, NOT NULL, foreign key",
    "54": "program limit exceeded: e.g. an index row too large for a huge value",
}

# Client-side: the driver could not encode an argument (asyncpg's DataError is a ValueError;
# a lone surrogate fails UTF-8 encoding; a date outside Python's range overflows).
_CLIENT_RECORD_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg_base.DataError,
    UnicodeError,
    OverflowError,
)

# What an adapter's own PostgreSQL call can raise, to be classified with classify_pg_error:
# an outage, a refused value, or a value the driver could not even encode. An adapter that
# catches less lets the rest escape as an unclassified, retryable internal_error.
PG_CALL_ERRORS: tuple[type[BaseException], ...] = (*PG_ERRORS, *_CLIENT_RECORD_ERRORS)

# Redis answers these when the server, not the command, is the problem.
_REDIS_DEPENDENCY_PREFIXES = (
    "LOADING",
    "BUSY",
    "MISCONF",
    "READONLY",
    "OOM",
    "MASTERDOWN",
    "NOREPLICAS",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOSCRIPT",
    "NOAUTH",
    "NOPERM",
)


def classify_pg_error(exc: BaseException) -> Blame:
    """``"record"`` when PostgreSQL (or asyncpg) refused the values; else ``"dependency"``."""
    if isinstance(exc, _CLIENT_RECORD_ERRORS):
        return "record"
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate[:2] in _PG_RECORD_CLASSES:
            return "record"
    return "dependency"


def classify_redis_error(exc: BaseException) -> Blame:
    """``"record"`` when Redis (or redis-py) refused the values; else ``"dependency"``."""
    if isinstance(exc, redis_errors.DataError | UnicodeError):
        return "record"  # redis-py could not encode an argument
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return "dependency"
    if isinstance(exc, redis_errors.ResponseError):
        text = str(exc).lstrip()
        if text.startswith(_REDIS_DEPENDENCY_PREFIXES) or isinstance(
            exc, redis_errors.ReadOnlyError | redis_errors.NoScriptError | redis_errors.OutOfMemoryError
        ):
            return "dependency"
        return "record"  # WRONGTYPE, "value is not an integer", "string exceeds maximum allowed size"
    return "dependency"
