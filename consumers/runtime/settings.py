"""Settings of the consume → handle → produce loop every consumer runs (``HERALD_RUNTIME__*``),
declared beside the runtime."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["MAX_FETCH_WAIT_MS", "RuntimeSettings"]

# A fetch the broker may hold longer than the client waits for any answer (aiokafka's request
# timeout, 40 s) would time out every time, idle or not: the waits stay well under it.
MAX_FETCH_WAIT_MS = 30_000


class RuntimeSettings(BaseModel, frozen=True):
    """The consume→handle→produce loop shared by every consumer."""

    max_batch: int = Field(500, gt=0, description="Records fetched and handled per poll.")
    poll_timeout_ms: int = Field(
        200, gt=0, description="Longest one poll waits for records before the loop goes round."
    )
    fetch_max_wait_ms: int = Field(
        20,
        ge=1,  # tansu answers a 0 ms fetch with no records at all: the consumer would never read any
        le=MAX_FETCH_WAIT_MS,
        description="Longest the broker may hold a fetch for more data. Tansu (the embedded broker) "
        "polls its storage at half the time left, so a record waits up to half this per hop; a real "
        "Kafka answers as soon as data arrives, and this only bounds how often an idle consumer asks.",
    )
    bulk_fetch_max_wait_ms: int = Field(
        250,
        ge=1,
        le=MAX_FETCH_WAIT_MS,
        description="`FETCH_MAX_WAIT_MS` of bulk-lane processes (`--lane bulk`, `fanout`), or "
        "`FETCH_MAX_WAIT_MS` if that is longer: an idle one "
        "then fetches 4 times a second instead of 50 (its CPU and the broker's); on tansu a bulk "
        "message may wait up to half this per hop.",
    )
    fetch_max_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Most bytes one fetch from the broker returns, all partitions."
    )
    max_partition_fetch_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Most bytes one fetch from the broker returns per partition."
    )
    session_timeout_ms: int = Field(10_000, gt=0, description="Kafka group session timeout.")
    heartbeat_interval_ms: int = Field(3_000, gt=0, description="Kafka group heartbeat interval.")
    max_poll_interval_ms: int = Field(
        300_000, gt=0, description="Kafka max.poll.interval.ms: a batch taking longer leaves the group."
    )
    shutdown_grace_s: float = Field(20.0, gt=0, description="SIGTERM: finish in-flight work within this.")
    commit_timeout_s: float = Field(
        5.0,
        gt=0,
        description="An offset commit not done within this (coordinator unknown, moving or loading the "
        "group) is abandoned like one a rebalance refused: the batch, already acknowledged, is replayed.",
    )
    commit_interval_ms: int = Field(
        100,
        ge=0,
        description="Offset commits are coalesced: at most one per this interval (and always on a "
        "revocation, at shutdown and on an idle poll once it has passed). A crash replays up to this "
        "much more acknowledged input (idempotent outputs absorb it); 0 commits every batch.",
    )
    revoke_settle_s: float = Field(
        6.0,
        gt=0,
        description="On a revocation, wait at most this for the batch in flight to commit before letting "
        "the partitions go (it is then replayed); keep it below the session timeout (the rebalance timeout).",
    )
    orphan_rejoin_after_s: float = Field(
        60.0,
        ge=0,
        description="A member holding no partitions while a partition of its topics has had unread "
        "records and no commit for this long rejoins the group, which rebalances it (a group can settle "
        "with partitions nobody owns); at most once per this interval; 0 turns it off.",
    )
    stuck_batch_s: float = Field(
        30.0,
        gt=0,
        description="A batch in hand longer than this (a dependency slow or stalled) makes the process "
        "not ready (`/readyz` 503, `herald_ready` 0) until it completes; nothing is dropped meanwhile.",
    )
    handler_max_retries: int = Field(
        5, ge=0, description="Retries of a retryable handler error before pausing."
    )
    handler_retry_base_s: float = Field(
        0.2, gt=0, description="First retry delay of a retryable handler error (doubles)."
    )
    poison_after_retries: int = Field(
        2,
        ge=0,
        description="After this many failed tries of a batch with a dependency error, split it to find "
        "a poison record (dead-lettered as `poison` only if the dependency answers other work or a probe).",
    )
    handler_retry_max_s: float = Field(
        5.0, gt=0, description="Longest delay between handler retries; also the pause after."
    )
    max_message_bytes: int = Field(
        262_144, gt=0, description="Larger input records go to the DLQ (too_large)."
    )
    linger_ms: int = Field(5, ge=0, description="Producer linger: how long a batch of outputs waits to fill.")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of every process: uvloop (less CPU per event) or asyncio's own."
    )
    startup_wait_s: float = Field(
        30.0,
        ge=0,
        description="At start, wait this long for Kafka and PostgreSQL before exiting with an error.",
    )
    bulk_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Bulk-lane processes (`--lane bulk`, `fanout`) lower their CPU priority to this nice "
        "value at start, so the priority lane gets a shared host's CPU first; 0: off. Containers: CPU requests.",
    )
