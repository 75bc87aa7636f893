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
import time
from typing import Any

import redis.asyncio as redis_asyncio

__all__ = ["LedgerWrites"]

# Two ARGV per key: "<op><ttl seconds>:<seen>" and the value; seen, for "cas", is the value the
# claimant saw ("" = absent), and may hold ':' (only the first one ends the ttl). One argument
# fewer per field than op, ttl and seen apart: the client packs every argument of every mark.
# set: SET EX; nx: SET NX EX; cas: SET EX if the key still holds what was seen; del_if: DEL if the
# key holds value. Answers: 1 done, 0 not (someone else's value).
_WRITES = """
local out = {}
for i = 1, #KEYS do
  local spec, value = ARGV[2*i-1], ARGV[2*i]
  local colon = string.find(spec, ':', 1, true)
  if not colon then
    return redis.error_reply('bad ledger mark ' .. spec)
  end
  local head, seen = string.sub(spec, 1, colon - 1), string.sub(spec, colon + 1)
  local op, ttl = string.match(head, '^([%a_]+)(%d+)$')
  local key = KEYS[i]
  if op == 'set' then
    redis.call('SET', key, value, 'EX', ttl)
    out[i] = 1
  elseif op == 'nx' then
    out[i] = redis.call('SET', key, value, 'NX', 'EX', ttl) and 1 or 0
  elseif op == 'cas' then
    if (redis.call('GET', key) or '') == seen then
      redis.call('SET', key, value, 'EX', ttl)
      out[i] = 1
    else
      out[i] = 0
    end
  elseif op == 'del_if' then
    if redis.call('GET', key) == value then
      redis.call('DEL', key)
      out[i] = 1
    else
      out[i] = 0
    end
  else
    return redis.error_reply('unknown ledger op ' .. tostring(op))
  end
end
return out
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
        keys: list[str] = []
        args: list[Any] = []
        for op, key, value, ttl_s, seen, _ in pending:
            keys.append(key)
            args += (f"{op}{ttl_s}:{seen}", value)
        started = time.perf_counter()
        try:
            answers = await self._script(keys=keys, args=args)
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
        for (*_, answer), done in zip(pending, answers, strict=True):
            if not answer.done():
                answer.set_result(bool(done))
