"""Which of a poll's due timers fire together: the pure half of the poller's batch path.

A kind with a batch handler (:data:`~consumers.scheduler.store.FireBatchHandler`) fires all its
rows of a poll in one savepoint and a few statements, where one by one each would cost a
savepoint and the handler's own round trips. The rest fire one by one, in the poll's order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from consumers.runtime.handling import Output

__all__ = ["batches", "in_row_order"]


def batches(kinds: Sequence[str | None], batchable: Collection[str]) -> dict[str, list[int]]:
    """The rows (by index, in order) each batchable kind fires together, kinds in ``batchable``'s
    order (what one kind's batch locks may have to come before another's); a row whose timer could
    not be read (``None``) is left to the one-by-one path, which sets it aside. Pure."""
    out: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        if kind is not None and kind in batchable:
            out.setdefault(kind, []).append(i)
    return {kind: out[kind] for kind in batchable if kind in out}


def in_row_order(results: Mapping[int, Sequence[Output]]) -> list[Output]:
    """The outputs of the rows that fired (by row index), in the rows' order: batches fire first,
    but what they produce goes out in the order the rows were released, as one by one. Pure."""
    return [o for i in sorted(results) for o in results[i]]
