"""Record vs dependency: the one table for asyncpg errors and the one for redis errors."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions import _base as asyncpg_base
from redis import exceptions as redis_errors

from channels.storage_errors import (
    PG_CALL_ERRORS,
    PG_ERRORS,
    PG_OUTAGES,
    classify_pg_error,
    classify_redis_error,
)


def _pg(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls("refused")


@pytest.mark.parametrize(
    ("error", "blame"),
    [
        # the record's values: never retried
        (_pg(asyncpg.exceptions.CharacterNotInRepertoireError), "record"),  # NUL in text
        (_pg(asyncpg.exceptions.UntranslatableCharacterError), "record"),
        (_pg(asyncpg.exceptions.InvalidTextRepresentationError), "record"),
        (_pg(asyncpg.exceptions.NumericValueOutOfRangeError), "record"),
        (_pg(asyncpg.exceptions.DatetimeFieldOverflowError), "record"),
        (_pg(asyncpg.exceptions.StringDataRightTruncationError), "record"),
        (_pg(asyncpg.exceptions.CheckViolationError), "record"),
        (_pg(asyncpg.exceptions.NotNullViolationError), "record"),
        (_pg(asyncpg.exceptions.ProgramLimitExceededError), "record"),  # index row too large
        (asyncpg_base.DataError("invalid input for query argument $1"), "record"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "record"),
        (OverflowError("date value out of range"), "record"),
        # the server's state: retry, pause
        (_pg(asyncpg.exceptions.CannotConnectNowError), "dependency"),
        (_pg(asyncpg.exceptions.AdminShutdownError), "dependency"),
        (_pg(asyncpg.exceptions.QueryCanceledError), "dependency"),  # statement timeout
        (_pg(asyncpg.exceptions.DeadlockDetectedError), "dependency"),
        (_pg(asyncpg.exceptions.SerializationError), "dependency"),
        (_pg(asyncpg.exceptions.TooManyConnectionsError), "dependency"),
        (_pg(asyncpg.exceptions.DiskFullError), "dependency"),
        (_pg(asyncpg.exceptions.ReadOnlySQLTransactionError), "dependency"),
        (_pg(asyncpg.exceptions.UndefinedTableError), "dependency"),  # not migrated: not the record
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "dependency"),
        (asyncpg.InterfaceError("pool is closing"), "dependency"),
        (ConnectionRefusedError(111, "refused"), "dependency"),
        (TimeoutError(), "dependency"),
        (RuntimeError("unknown"), "dependency"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_pg_errors_are_blamed_on_the_record_only_for_refused_values(error: BaseException, blame: str) -> None:
    assert classify_pg_error(error) == blame


@pytest.mark.parametrize(
    ("error", "blame"),
    [
        (redis_errors.DataError("Invalid input of type: 'dict'"), "record"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "record"),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), "record"),
        (redis_errors.ResponseError("ERR value is not an integer or out of range"), "record"),
        (redis_errors.ResponseError("ERR string exceeds maximum allowed size"), "record"),
        (redis_errors.ConnectionError("Error 111 connecting"), "dependency"),
        (redis_errors.TimeoutError("Timeout reading from socket"), "dependency"),
        (redis_errors.BusyLoadingError("LOADING Redis is loading the dataset in memory"), "dependency"),
        (redis_errors.ReadOnlyError("READONLY You can't write against a read only replica."), "dependency"),
        (redis_errors.OutOfMemoryError("OOM command not allowed"), "dependency"),
        (redis_errors.NoScriptError("NOSCRIPT No matching script"), "dependency"),
        (redis_errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), "dependency"),
        (redis_errors.ResponseError("BUSY Redis is busy running a script"), "dependency"),
        (redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"), "dependency"),
        (OSError(113, "No route to host"), "dependency"),
        (TimeoutError(), "dependency"),
        (RuntimeError("unknown"), "dependency"),
    ],
    ids=lambda v: f"{type(v).__name__}:{str(v)[:12]}" if isinstance(v, BaseException) else str(v),
)
def test_redis_errors_are_blamed_on_the_record_only_for_refused_values(
    error: BaseException, blame: str
) -> None:
    assert classify_redis_error(error) == blame


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.InterfaceError("connection is closed"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_a_server_going_away_mid_statement_is_an_outage_everywhere(error: BaseException) -> None:
    """Every consumer catches PG_OUTAGES/PG_ERRORS; a shutdown mid-COMMIT must retry, not dead-letter."""
    assert isinstance(error, PG_OUTAGES) and isinstance(error, PG_ERRORS)
    assert classify_pg_error(error) == "dependency"


def test_refused_values_are_caught_as_errors_but_are_not_outages() -> None:
    refused = asyncpg.CharacterNotInRepertoireError("invalid byte sequence")
    assert isinstance(refused, PG_ERRORS) and not isinstance(refused, PG_OUTAGES)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        OverflowError("date value out of range"),
        ConnectionResetError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_adapter_catching_pg_call_errors_classifies_everything_a_call_raises(error: BaseException) -> None:
    # The chaos run found the in-app adapter letting InternalClientError (a PostgreSQL shutdown
    # mid-statement) escape as internal_error: adapters catch PG_CALL_ERRORS, then classify.
    assert isinstance(error, PG_CALL_ERRORS)
    assert classify_pg_error(error) in ("record", "dependency")
