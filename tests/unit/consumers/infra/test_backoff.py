"""The one backoff: exponential steps, jitter bounds, the cap, Retry-After floors (tables and properties)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.infra.backoff import backoff, jittered

RAND = st.floats(0.0, 1.0, exclude_max=True)
JITTER = st.floats(0.0, 1.0, exclude_max=True)
SECONDS = st.floats(0.0, 1e6, allow_nan=False)


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "expected"),
    [
        (1, 0.5, None, 0.2),  # rand 0.5 = the step itself
        (2, 0.5, None, 0.4),
        (3, 0.5, None, 0.8),
        (5, 0.5, None, 3.2),
        (6, 0.5, None, 5.0),  # 6.4 capped
        (60, 0.5, None, 5.0),
        (10_000, 0.5, None, 5.0),  # no overflow
        (1, 0.0, None, 0.16),  # -20 %
        (3, 0.75, None, 0.88),  # +10 %
        (6, 0.99, None, 5.0),  # jitter never lifts a delay above the cap
        (5, 0.99, None, 3.2 * 1.196),
        (1, 0.5, 1.0, 1.0),  # a longer Retry-After is a floor
        (3, 0.5, 0.5, 0.8),  # a shorter one changes nothing
        (1, 0.5, 10**9, 5.0),  # clamped to the cap
        (1, 0.5, 0.0, 0.2),
        (1, 0.5, -3.0, 0.2),  # nonsense ignored
        (1, 0.5, math.nan, 0.2),
    ],
)
def test_table(attempt: int, rand: float, retry_after: float | None, expected: float) -> None:
    got = backoff(attempt, base=0.2, cap=5.0, jitter=0.2, rand=rand, retry_after=retry_after)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": 0},
        {"attempt": -1},
        {"base": -0.1},
        {"base": math.nan},
        {"cap": -1.0},
        {"jitter": -0.1},
        {"jitter": 1.0},
        {"rand": 1.0},
        {"rand": -0.01},
        {"rand": math.nan},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"attempt": 1, "base": 0.2, "cap": 5.0, "jitter": 0.2, "rand": 0.5, **kwargs}
    with pytest.raises(ValueError):
        backoff(int(args.pop("attempt")), **args)


@given(attempt=st.integers(1, 5000), base=SECONDS, cap=SECONDS, jitter=JITTER, rand=RAND)
def test_within_the_jitter_band_of_the_capped_step_and_never_above_the_cap(
    attempt: int, base: float, cap: float, jitter: float, rand: float
) -> None:
    got = backoff(attempt, base=base, cap=cap, jitter=jitter, rand=rand)
    step = min(cap, base * 2.0 ** min(attempt - 1, 1000))
    assert 0.0 <= got <= cap
    assert step * (1 - jitter) * (1 - 1e-9) <= got <= step * (1 + jitter) * (1 + 1e-9)


@given(attempt=st.integers(1, 60), base=st.floats(0.001, 10.0), cap=SECONDS, jitter=JITTER, rand=RAND)
def test_grows_with_the_attempt_until_the_cap(
    attempt: int, base: float, cap: float, jitter: float, rand: float
) -> None:
    now = backoff(attempt, base=base, cap=cap, jitter=jitter, rand=rand)
    later = backoff(attempt + 1, base=base, cap=cap, jitter=jitter, rand=rand)
    assert later >= now


@given(attempt=st.integers(1, 60), cap=SECONDS, jitter=JITTER, a=RAND, b=RAND)
def test_monotonic_in_rand(attempt: int, cap: float, jitter: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert backoff(attempt, base=0.1, cap=cap, jitter=jitter, rand=lo) <= backoff(
        attempt, base=0.1, cap=cap, jitter=jitter, rand=hi
    )


@given(attempt=st.integers(1, 60), cap=SECONDS, rand=RAND)
def test_zero_jitter_is_exact(attempt: int, cap: float, rand: float) -> None:
    assert backoff(attempt, base=0.1, cap=cap, jitter=0.0, rand=rand) == min(cap, 0.1 * 2.0 ** (attempt - 1))


@given(delay=SECONDS, cap=SECONDS, jitter=JITTER, rand=RAND, retry_after=st.floats(allow_nan=True))
def test_retry_after_is_a_floor_clamped_to_the_cap(
    delay: float, cap: float, jitter: float, rand: float, retry_after: float
) -> None:
    plain = jittered(delay, cap=cap, jitter=jitter, rand=rand)
    got = jittered(delay, cap=cap, jitter=jitter, rand=rand, retry_after=retry_after)
    assert 0.0 <= got <= cap
    if retry_after > 0:
        assert got == max(plain, min(retry_after, cap))
    else:
        assert got == plain
