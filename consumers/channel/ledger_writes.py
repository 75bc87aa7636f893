"""The delivery ledger's marks from concurrent deliveries, written together: one script call per
two loop turns.

A channel consumer runs up to ``channel.concurrency`` deliveries at once, and each one marks its
key before the provider call (``claim``) and after it (``done``, or ``release`` after a failure).
Sent one by one, those are two round trips per message, each awaited, and each costing the client
a connection checkout, a command to pack and a socket write, and an answer to parse. Here every
mark asked for during two turns of the event loop is written by one Lua script call at the end of
the second (marks of deliveries that became ready together: a batch's first wave, or the wave the
last answer woke). Two turns, not one: a wave's ``done`` marks are asked in the turn its
answers arrive, and the claims of the deliveries that take the slots they free are asked in the
next (a slot changes hands through a wake-up); one call writes both, which halves the script
calls of a batch (about 24 to 12 per 500 emails).

Nothing waits past the turn after the one it was asked in, and each caller still awaits its own
mark's answer, so a claim still happens right before its provider call and ``done`` right after
the provider accepted. The script applies the marks in the order they were asked for. A connection error,
timeout or script error goes to every caller of that call (each then degrades as it did when its
own command failed: :mod:`consumers.channel.ledger`).
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as redis_asyncio

__all__ = ["LedgerWrites"]

# All the marks of a call in one JSON array argument, four items per key: op, ttl seconds, seen and
# value (seen, for "cas", is the value the claimant saw; "" = absent). One argument per call
# instead of two per mark: the client packs every argument one by one in Python, where json.dumps
# writes the whole array in C. set: SET EX; nx: SET NX EX; cas: SET EX if the key still holds what
# was seen; del_if: DEL if the key holds value. The answer is one string, a character per mark:
# "1" done, "0" not (someone else's value): one reply to parse, not one integer per mark.
_WRITES = """
local marks = cjson.decode(ARGV[1])
if #marks ~= 4 * #KEYS then
  return redis.error_reply('ledger marks: ' .. #marks .. ' items for ' .. #KEYS .. ' keys')
end
local out = {}
for i = 1, #KEYS do
  local op, ttl, seen, value = marks[4*i-3], marks[4*i-2], marks[4*i-1], marks[4*i]
  local key = KEYS[i]
  if op == 'set' then
    redis.call('SET', key, value, 'EX', ttl)
    out[i] = '1'
  elseif op == 'nx' then
    out[i] = redis.call('SET', key, value, 'NX', 'EX', ttl) and '1' or '0'
  elseif op == 'cas' then
    if (redis.call('GET', key) or '') == seen then
      redis.call('SET', key, value, 'EX', ttl)
      out[i] = '1'
    else
      out[i] = '0'
    end
  elseif op == 'del_if' then
    if redis.call('GET', key) == value then
      redis.call('DEL', key)
      out[i] = '1'
    else
      out[i] = '0'
    end
  else
    return redis.error_reply('unknown ledger op ' .. tostring(op))
  end
end
return table.concat(out)
"""

_Write = tuple[str, str, str, int, str, "asyncio.Future[bool]"]  # op, key, value, ttl, seen, answer


class LedgerWrites:
    """Write concurrent callers' marks through ``client`` in one script call per loop turn."""

    def __init__(self, client: redis_asyncio.Redis) -> None:
        self._script = client.register_script(_WRITES)
        self._pending: list[_Write] = []
        self._scheduled = False
        self._writing: set[asyncio.Task[None]] = set()
        self.round_trips = 0  # script calls answered, their marks, and their wall seconds (summed)
        self.marks = 0
        self.seconds = 0.0

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        await self._ask("set", key, value, ttl_s)

    async def set_new(self, key: str, value: str, ttl_s: int) -> bool:
        """SET NX: False when the key exists."""
        return await self._ask("nx", key, value, ttl_s)

    async def compare_and_set(self, key: str, value: str, ttl_s: int, seen: str) -> bool:
        """False when the key no longer holds ``seen`` ("" = absent)."""
        return await self._ask("cas", key, value, ttl_s, seen)

    async def delete_if(self, key: str, value: str) -> bool:
        """Delete the key if it holds ``value``."""
        return await self._ask("del_if", key, value, 0)

    async def _ask(self, op: str, key: str, value: str, ttl_s: int, seen: str = "") -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._pending.append((op, key, value, ttl_s, seen, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._next_turn)
        return await answer

    def _next_turn(self) -> None:
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        live = [w for w in pending if not w[5].done()]  # a caller cancelled before the write
        if live:
            task = asyncio.get_running_loop().create_task(self._write(live))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write(self, pending: list[_Write]) -> None:
        keys = [w[1] for w in pending]
        marks = json.dumps(
            [item for op, _, value, ttl_s, seen, _ in pending for item in (op, ttl_s, seen, value)],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        started = time.perf_counter()
        try:
            reply = await self._script(keys=keys, args=[marks])
        except BaseException as exc:  # connection error, timeout, cancelled: every caller's failure
            for *_, answer in pending:
                if answer.done():
                    continue
                if isinstance(exc, Exception):
                    answer.set_exception(exc)
                else:
                    answer.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        self.round_trips += 1
        self.marks += len(pending)
        self.seconds += time.perf_counter() - started
        answers = reply.decode() if isinstance(reply, bytes) else str(reply)
        for (*_, answer), done in zip(pending, answers, strict=True):
            if not answer.done():
                answer.set_result(done == "1")
