"""Bulk-lane processes lower their CPU priority at start; priority-lane ones never move."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.cpu_priority import is_bulk, nice_target

NICE = st.integers(min_value=-20, max_value=19)


def test_bulk_lanes_and_the_fanout_are_bulk_work() -> None:
    assert is_bulk("channel", "bulk")
    assert is_bulk("classifier", "bulk")  # the broadcast copies' classifier
    assert is_bulk("fanout", "priority")  # whatever its --lane: the CLI's default is priority
    assert not is_bulk("channel", "priority")
    assert not is_bulk("classifier", "priority")
    assert not is_bulk("fallback", "priority")


@given(bulk=st.booleans(), configured=st.integers(min_value=0, max_value=19), current=NICE)
def test_only_bulk_moves_and_only_towards_a_lower_priority(bulk: bool, configured: int, current: int) -> None:
    target = nice_target(bulk, configured, current)
    if not bulk or configured <= current:
        assert target is None  # 0 turns it off; an already lower priority is kept
    else:
        assert target == configured > current


_CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from consumers.runtime.cpu_priority import lower_bulk_priority

    stop = threading.Event()
    before = threading.Thread(target=stop.wait)  # a thread that exists already
    before.start()
    set_to = lower_bulk_priority(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    after = threading.Thread(target=stop.wait)  # one started later
    after.start()
    nice = {}
    for tid in os.listdir("/proc/self/task"):
        stat = open(f"/proc/self/task/{tid}/stat").read()
        nice[tid] = int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19 of proc(5)
    stop.set()
    print(json.dumps({"set": set_to, "nice": sorted(nice.values())}))
    """
)


def _run(process: str, lane: str, configured: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, process, lane, str(configured)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


BASE = os.getpriority(os.PRIO_PROCESS, 0)  # what the children inherit from the test run


@pytest.mark.skipif(BASE >= 19, reason="the tests already run at the lowest priority")
def test_a_bulk_process_lowers_every_thread_and_the_threads_it_starts_later() -> None:
    result = _run("channel", "bulk", 19)
    assert result["set"] == 19
    assert result["nice"] == [19, 19, 19]  # main thread, the thread before, the thread after


def test_a_priority_process_and_a_bulk_one_with_the_setting_off_keep_their_priority() -> None:
    assert _run("channel", "priority", 19) == {"set": None, "nice": [BASE] * 3}
    assert _run("channel", "bulk", 0) == {"set": None, "nice": [BASE] * 3}
