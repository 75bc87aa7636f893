"""The poison net under every consumer: split a failing batch until each failing record stands alone.

A handler classifies what it can (a :class:`~schemas.errors.RecordError` is the record's fault,
a :class:`~schemas.errors.DependencyUnavailable` the server's). This net catches what it
classified wrongly or not at all, so that one record never stops a partition:

* The batch failed with anything but ``DependencyUnavailable`` (a ``RecordError``, a bug):
  split at once. A record that fails alone is dead-lettered with the ``RecordError``'s reason,
  or ``handler_error`` for anything else.
* The batch keeps failing with ``DependencyUnavailable``: split too, but believe it is the record
  only with evidence that the dependency answers: the handler's ``probe()`` says its servers
  answer, or, for a handler without a probe, another part of the batch went through. Then a record that still fails alone (tried
  twice) is dead-lettered with reason ``poison`` and its last error. Without evidence (both halves
  fail and the probe fails too) it is an outage: the error is raised and the runtime pauses.

Halves are tried in order (left before right), so a key's records keep their offset order.
A single poison record in a batch of n costs about 2·log2(n) handler calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from consumers.runtime.handling import DeadLetter, Incoming, Result
from schemas.errors import DependencyUnavailable, RecordError

__all__ = ["Probe", "isolate"]

T = TypeVar("T")
Probe = Callable[[], Awaitable[bool]]
HandleFn = Callable[[Sequence[Incoming[T]]], Awaitable[Sequence[Result]]]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: Exception


@dataclass
class _Split(Generic[T]):
    handle: HandleFn[T]
    probe: Probe | None
    successes: int = 0
    calls: int = 0
    _probed: bool | None = None

    async def attempt(self, items: Sequence[Incoming[T]]) -> Sequence[Result] | _Failed:
        self.calls += 1
        try:
            results = await self.handle(items)
        except Exception as exc:  # classified below; nothing may escape the net
            return _Failed(exc)
        if len(results) != len(items):
            return _Failed(RuntimeError(f"handler returned {len(results)} results for {len(items)}"))
        self.successes += 1
        return results

    async def dependency_answers(self) -> bool:
        """Evidence that the dependency works: the probe says so; without a probe, other work
        went through. With a probe, a success is no evidence: work can go through without the
        dependency (the classifier's cached profiles did, during a PostgreSQL outage, and the
        events whose profiles were not cached were dead-lettered as poison)."""
        if self.probe is None:
            return self.successes > 0
        if self._probed is None:
            self._probed = await _run_probe(self.probe)
        return self._probed

    async def split(self, items: Sequence[Incoming[T]], error: Exception) -> list[Result | _Failed]:
        if len(items) == 1:
            return [_Failed(error)]
        mid = len(items) // 2
        halves = (items[:mid], items[mid:])
        tried = [await self.attempt(half) for half in halves]
        failures = [t for t in tried if isinstance(t, _Failed)]
        if (
            len(failures) == 2
            and all(isinstance(f.error, DependencyUnavailable) for f in failures)
            and not await self.dependency_answers()
        ):
            raise failures[-1].error  # every part fails and nothing answers: an outage
        out: list[Result | _Failed] = []
        for half, outcome in zip(halves, tried, strict=True):
            if isinstance(outcome, _Failed):
                out += await self.split(half, outcome.error)
            else:
                out += outcome
        return out

    async def verdict(self, item: Incoming[T], failed: _Failed) -> Result:
        """The dead letter of a record that failed alone (or raise: the dependency is down)."""
        error = failed.error
        if isinstance(error, DependencyUnavailable):
            again = await self.attempt([item])  # a blip must not cost a good record
            if not isinstance(again, _Failed):
                return again[0]
            error = again.error
            if not isinstance(error, DependencyUnavailable):
                return _letter(error)
            if not await self.dependency_answers():
                raise error
            return DeadLetter("poison", type(error).__name__, f"{error}"[:1000])
        return _letter(error)


def _letter(error: Exception) -> DeadLetter:
    reason = error.reason if isinstance(error, RecordError) else "handler_error"
    return DeadLetter(reason, type(error).__name__, f"{error}"[:1000])


async def _run_probe(probe: Probe | None) -> bool:
    if probe is None:
        return False
    try:
        return await probe()
    except Exception:  # a probe that fails is a "no"
        return False


async def isolate(
    handle: HandleFn[T], items: Sequence[Incoming[T]], error: Exception, *, probe: Probe | None = None
) -> tuple[list[Result], int]:
    """One result per item after ``handle(items)`` failed with ``error``, and the handler calls made.

    Raises :class:`DependencyUnavailable` when the evidence says the dependency, not a record,
    is failing.
    """
    state: _Split[T] = _Split(handle, probe)
    split = await state.split(items, error)
    results: list[Result] = []
    for item, outcome in zip(items, split, strict=True):
        results.append(await state.verdict(item, outcome) if isinstance(outcome, _Failed) else outcome)
    return results, state.calls
