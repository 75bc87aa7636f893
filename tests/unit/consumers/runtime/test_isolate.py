"""The poison net: split a failing batch until each failing record stands alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from consumers.runtime.handling import DeadLetter, Incoming, Output, Result
from consumers.runtime.isolate import isolate
from schemas.errors import DependencyUnavailable, RecordError


def _items(n: int) -> list[Incoming[int]]:
    return [Incoming("t", 0, i, None, i, (), 0) for i in range(n)]


class _Handler:
    """Fails any batch holding a bad record the way it is told to; echoes the rest."""

    def __init__(self, bad: dict[int, Exception], *, down: bool = False) -> None:
        self.bad = bad
        self.down = down
        self.calls = 0

    async def handle(self, batch: Sequence[Incoming[int]]) -> Sequence[Result]:
        self.calls += 1
        if self.down:
            raise DependencyUnavailable("connection refused")
        for item in batch:
            if item.value in self.bad:
                raise self.bad[item.value]
        return [[Output("out", str(item.value).encode())] for item in batch]


async def _yes() -> bool:
    return True


async def _no() -> bool:
    return False


@pytest.mark.parametrize("n", [1, 2, 7, 500])
async def test_a_poison_record_is_isolated_and_the_rest_go_through(n: int) -> None:
    poison = n // 3
    handler = _Handler({poison: DependencyUnavailable("CharacterNotInRepertoireError")})
    results, calls = await isolate(handler.handle, _items(n), DependencyUnavailable("x"), probe=_yes)
    letters = {i: r for i, r in enumerate(results) if isinstance(r, DeadLetter)}
    assert set(letters) == {poison}
    assert letters[poison].reason == "poison"
    assert letters[poison].error_class == "DependencyUnavailable"
    assert "CharacterNotInRepertoireError" in letters[poison].detail
    assert [r[0].value for r in results if not isinstance(r, DeadLetter)] == [
        str(i).encode() for i in range(n) if i != poison
    ]
    assert calls <= 2 * math.ceil(math.log2(max(n, 2))) + 2  # bounded: ~2·log2(n)


async def test_without_a_probe_other_work_going_through_is_the_evidence() -> None:
    handler = _Handler({3: DependencyUnavailable("bad")})
    results, _ = await isolate(handler.handle, _items(8), DependencyUnavailable("bad"), probe=None)
    assert [i for i, r in enumerate(results) if isinstance(r, DeadLetter)] == [3]


async def test_a_part_that_goes_through_without_the_dependency_is_no_evidence() -> None:
    # The classifier during a PostgreSQL outage: events whose profiles are cached go through,
    # the others fail with DependencyUnavailable; the probe says PostgreSQL is down.
    down = DependencyUnavailable("recipient lookup failed: connection refused")
    for n, bad in [(2, {1}), (3, {0, 2}), (8, {1, 6})]:
        handler = _Handler(dict.fromkeys(bad, down))
        with pytest.raises(DependencyUnavailable):
            await isolate(handler.handle, _items(n), down, probe=_no)
        results, _ = await isolate(handler.handle, _items(n), down, probe=_yes)  # it answers: poison
        assert {i for i, r in enumerate(results) if isinstance(r, DeadLetter)} == bad


async def test_an_outage_is_not_blamed_on_records() -> None:
    handler = _Handler({}, down=True)
    with pytest.raises(DependencyUnavailable):
        await isolate(handler.handle, _items(500), DependencyUnavailable("down"), probe=_no)
    assert handler.calls == 2  # both halves failed and the probe failed: stop at once


async def test_a_single_record_needs_the_probe_before_it_is_called_poison() -> None:
    handler = _Handler({0: DependencyUnavailable("bad")})
    with pytest.raises(DependencyUnavailable):
        await isolate(handler.handle, _items(1), DependencyUnavailable("bad"), probe=_no)
    results, _ = await isolate(handler.handle, _items(1), DependencyUnavailable("bad"), probe=_yes)
    assert isinstance(results[0], DeadLetter) and results[0].reason == "poison"


async def test_two_poison_records_in_both_halves_are_found_with_a_probe() -> None:
    handler = _Handler({1: DependencyUnavailable("a"), 6: DependencyUnavailable("b")})
    results, _ = await isolate(handler.handle, _items(8), DependencyUnavailable("a"), probe=_yes)
    assert [i for i, r in enumerate(results) if isinstance(r, DeadLetter)] == [1, 6]


async def test_record_errors_and_bugs_keep_their_reason() -> None:
    handler = _Handler({2: RecordError("bad text", reason="invalid_content"), 5: ValueError("bug")})
    results, _ = await isolate(handler.handle, _items(8), ValueError("bug"))
    letters = {i: r for i, r in enumerate(results) if isinstance(r, DeadLetter)}
    assert {i: (r.reason, r.error_class) for i, r in letters.items()} == {
        2: ("invalid_content", "RecordError"),
        5: ("handler_error", "ValueError"),
    }


async def test_a_blip_does_not_cost_a_good_record() -> None:
    class _Blip(_Handler):
        async def handle(self, batch: Sequence[Incoming[int]]) -> Sequence[Result]:
            self.calls += 1
            if self.calls <= 2:  # both halves fail once; each record alone then goes through
                raise DependencyUnavailable("blip")
            return await super().handle(batch)

    handler = _Blip({})
    results, _ = await isolate(handler.handle, _items(2), DependencyUnavailable("blip"), probe=_yes)
    assert not [r for r in results if isinstance(r, DeadLetter)]
