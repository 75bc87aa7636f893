"""The delivery ledger's marks from concurrent deliveries are written by one script call per two
loop turns: each caller gets its own answer, in the order asked, and a failed call fails every caller in
it (each then degrades as it did alone)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
import redis.asyncio as redis_asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from consumers.channel.ledger_writes import LedgerWrites

pytestmark = pytest.mark.timeout(60)


async def test_marks_asked_for_together_are_one_round_trip_each_with_its_answer(
    redis_client: redis_asyncio.Redis,
) -> None:
    writes = LedgerWrites(redis_client)
    run = uuid.uuid4().hex
    keys = [f"ledger-writes:{run}:{i}" for i in range(50)]
    await redis_client.set(keys[7], "someone else")
    await redis_client.set(keys[8], "in_flight|channel-email-priority:dead")  # an owner holds ":"

    answers = await asyncio.gather(
        *(writes.set_new(k, "mine", 60) for k in keys[:7]),
        writes.set_new(keys[7], "mine", 60),  # taken: not claimed
        writes.compare_and_set(keys[8], "mine", 60, "in_flight|channel-email-priority:dead"),  # as seen
        writes.compare_and_set(keys[9], "mine", 60, "in_flight|x:dead"),  # changed (absent) since
        *(writes.set(k, "done|x", 60) for k in keys[10:]),
    )
    assert writes.round_trips == 1
    assert writes.marks == 50
    assert answers[:10] == [True] * 7 + [False, True, False]
    values = await redis_client.mget(keys)
    assert values[:10] == [b"mine"] * 7 + [b"someone else", b"mine", None]
    assert set(values[10:]) == {b"done|x"}
    assert 0 < await redis_client.ttl(keys[0]) <= 60
    assert 0 < await redis_client.ttl(keys[8]) <= 60

    # Asked for in a later turn (after the first answers came): a second call. Only our own
    # claim is deleted; the marks of one call apply in the order they were asked for.
    mine, theirs, _, again = await asyncio.gather(
        writes.delete_if(keys[0], "mine"),
        writes.delete_if(keys[7], "mine"),
        writes.set(keys[1], "done|y", 60),
        writes.set_new(keys[1], "mine", 60),
    )
    assert (mine, theirs, again) == (True, False, False)
    assert await redis_client.mget(keys[0], keys[1], keys[7]) == [None, b"done|y", b"someone else"]
    assert writes.round_trips == 2


async def test_marks_of_a_turn_and_the_next_share_one_call(redis_client: redis_asyncio.Redis) -> None:
    """A wave's ``done`` marks, and the claims of the deliveries woken by the slots they free."""
    writes = LedgerWrites(redis_client)
    run = uuid.uuid4().hex

    async def next_turn(key: str) -> bool:
        await asyncio.sleep(0)  # a slot changes hands through a wake-up: one turn later
        return await writes.set_new(key, "mine", 60)

    done, claimed = await asyncio.gather(writes.set(f"lw:{run}:a", "done|x", 60), next_turn(f"lw:{run}:b"))
    assert (done, claimed) == (None, True)
    assert writes.round_trips == 1
    assert writes.marks == 2


async def test_a_connection_that_fails_fails_every_caller_of_its_call() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis_asyncio.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1.0)
    writes = LedgerWrites(client)
    try:
        got = await asyncio.gather(
            writes.set_new("a", "v", 60), writes.set("b", "v", 60), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(g, RedisConnectionError) for g in got), got
    assert writes.round_trips == 0


async def test_values_and_seen_values_are_written_byte_for_byte(redis_client: redis_asyncio.Redis) -> None:
    """The marks travel as one JSON argument: quotes, backslashes, newlines, non-ASCII text and
    JSON-looking text reach Redis as the very bytes a plain SET writes."""
    writes = LedgerWrites(redis_client)
    run = uuid.uuid4().hex
    odd = [
        'done|"quoted"',
        "done|back\\slash",
        "done|line\nbreak",
        "done|café ☕ 𝄞",
        'done|{"a":[1]}',
        "done|",
    ]
    keys = [f"lw:{run}:{i}" for i in range(len(odd))]
    await asyncio.gather(*(writes.set(k, v, 60) for k, v in zip(keys, odd, strict=True)))
    assert await redis_client.mget(keys) == [v.encode() for v in odd]
    # The values just written are what a compare-and-set has seen: each one matches exactly.
    swapped = await asyncio.gather(
        *(writes.compare_and_set(k, "mine", 60, v) for k, v in zip(keys, odd, strict=True))
    )
    assert swapped == [True] * len(odd)
    assert await writes.compare_and_set(keys[0], "again", 60, "done|quoted") is False  # not what it holds
    assert await redis_client.mget(keys) == [b"mine"] * len(odd)
