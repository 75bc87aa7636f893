"""How long to wait before trying again: the one backoff every retry loop in Herald uses.

Pure: the random draw (``rand``, uniform in [0, 1)) comes in as an argument, so every delay is
a row in a table test. Callers draw it at the edge (``random.random()``).

Used by the runtime's handler retries, the channel consumer's in-process retries, the
reconnect loops of the scheduler and of process start-up (:func:`backoff`), and by the
fallback consumer's retry schedule, whose steps are data rather than powers of two
(:func:`jittered`).
"""

from __future__ import annotations

__all__ = ["backoff", "jittered"]

_MAX_DOUBLINGS = 1000  # 2.0 ** 1024 overflows; any cap is reached long before this


def jittered(
    delay: float, *, cap: float, jitter: float, rand: float, retry_after: float | None = None
) -> float:
    """``delay`` spread within ±``jitter`` of itself, at most ``cap``, at least ``retry_after``.

    The spread (``delay · (1 + jitter · (2·rand − 1))``) keeps clients that failed together
    from coming back together. A provider's ``retry_after`` is a floor, clamped to ``cap`` so
    a hostile or broken ``Retry-After: 99999999`` cannot park work forever. The result is
    always in [0, cap].
    """
    if not delay >= 0.0 or not cap >= 0.0:  # also refuses NaN
        raise ValueError(f"delay and cap must be >= 0, got {delay} and {cap}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    spread = min(cap, delay * (1.0 + jitter * (2.0 * rand - 1.0)))
    if retry_after is not None and retry_after > 0.0:  # NaN compares False: ignored
        return max(spread, min(retry_after, cap))
    return spread


def backoff(
    attempt: int, *, base: float, cap: float, jitter: float, rand: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): ``base · 2^(attempt−1)``, at
    most ``cap``, then :func:`jittered` (±``jitter``, never above ``cap``, never below
    ``retry_after`` clamped to ``cap``)."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if not base >= 0.0:
        raise ValueError(f"base must be >= 0, got {base}")
    exponential = min(cap, base * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    return jittered(exponential, cap=cap, jitter=jitter, rand=rand, retry_after=retry_after)
