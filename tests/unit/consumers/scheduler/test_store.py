"""Which fire-handler errors are outages (the batch is retried) and which set the timer aside."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError

from consumers.scheduler.store import is_outage
from schemas.errors import DependencyUnavailable, InvalidContent


def test_outages_retry_the_batch() -> None:
    assert is_outage(DependencyUnavailable("profile lookup timed out"))
    assert is_outage(KafkaConnectionError())
    assert is_outage(ConnectionResetError())
    assert is_outage(asyncpg.ConnectionDoesNotExistError("gone"))
    assert is_outage(asyncpg.LockNotAvailableError("lock timeout"))  # not about the values: retry


def test_the_timers_own_faults_set_it_aside() -> None:
    assert not is_outage(InvalidContent("payload is nested too deeply to parse"))
    assert not is_outage(asyncpg.CharacterNotInRepertoireError("invalid byte sequence: 0x00"))
    assert not is_outage(asyncpg.CheckViolationError("check"))
    assert not is_outage(KeyError("digest_id"))  # a bug is deterministic for this timer's data
    # asyncpg could not encode a value: an InterfaceError by class, the timer's fault all the same
    assert not is_outage(asyncpg.DataError("invalid input for query argument $1"))
    assert not is_outage(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
