"""The channel consumer's pure parts: the in-process retry schedule."""

from __future__ import annotations

import pytest

from consumers.channel.consumer import retry_delay


@pytest.mark.parametrize(
    ("retry", "rand", "retry_after", "expected"),
    [
        (1, 0.0, None, 0.05),  # base 0.1 s, -50 %
        (1, 0.5, None, 0.1),
        (2, 0.5, None, 0.2),
        (3, 0.75, None, 0.5),  # 0.4 + 25 %
        (10, 0.5, None, 2.0),  # capped at max_s
        (5, 0.99, None, 2.0),  # 1.6 + 49 %, capped
        (1, 0.0, 1.5, 1.5),  # a provider's short Retry-After is a floor
        (1, 0.0, 2.0, 2.0),
        (1, 0.0, 2.5, None),  # longer than the in-process budget: the fallback's job
    ],
)
def test_retry_delay(retry: int, rand: float, retry_after: float | None, expected: float | None) -> None:
    got = retry_delay(retry, max_s=2.0, rand=rand, retry_after=retry_after)
    assert got == expected if expected is None else got == pytest.approx(expected)
