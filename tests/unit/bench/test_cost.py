"""CPU per event and utilisation, read from the kernel's accounting of each process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.cost import Cost, Window, above_idle, proc_cpu_s, self_cpu_s, tree_cpu_s


def test_a_busy_child_is_charged_its_own_cpu_and_an_idle_one_nearly_none() -> None:
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass\nimport sys; sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
    )
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)  # both interpreters started
        window = Window({"busy": busy.pid, "idle": idle.pid, "self": None})
        window.start()
        deadline = time.monotonic() + 30
        while proc_cpu_s(busy.pid) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.05)
        window.stop()
        costs = {c.process: c for c in window.costs({"busy": 1000, "idle": 1000, "self": 1000})}
    finally:
        for p in (busy, idle):
            p.communicate(b"")
    assert costs["busy"].cpu_s > 0.2
    assert costs["idle"].cpu_s < 0.05
    assert costs["busy"].us_per_event == costs["busy"].cpu_s / 1000 * 1e6
    assert 0 < costs["busy"].utilisation <= (os.cpu_count() or 1) + 0.1


def test_self_cpu_counts_this_process_work() -> None:
    before = self_cpu_s()
    t = time.process_time()
    while time.process_time() - t < 0.1:
        pass
    assert self_cpu_s() - before >= 0.09


def test_cost_per_event_and_utilisation() -> None:
    c = Cost("classifier", events=20_000, cpu_s=1.0, wall_s=2.0)
    assert c.us_per_event == 50.0
    assert c.utilisation == 0.5
    assert c.as_dict()["us_per_event"] == 50.0


def test_a_server_forking_per_connection_is_charged_its_childrens_cpu() -> None:
    # A parent that idles while its child burns 0.6 s of CPU (a postmaster and a backend).
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "child = subprocess.Popen([sys.executable, '-c', "
            "'import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.6: pass\\n"
            "import sys; sys.stdin.read()'], stdin=subprocess.PIPE)\n"
            "sys.stdin.read(); child.communicate(b'')",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.3)
        window = Window({"server": parent.pid, "alone": parent.pid}, trees=frozenset({"server"}))
        window.start()
        deadline = time.monotonic() + 30
        while tree_cpu_s(parent.pid) - proc_cpu_s(parent.pid) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.05)
        window.stop()
        costs = {c.process: c for c in window.costs(1)}
    finally:
        parent.communicate(b"")
    assert costs["server"].cpu_s > 0.2  # the child's burn, counted under its parent
    assert costs["alone"].cpu_s < 0.1  # the parent alone did almost nothing


def test_processes_sharing_one_cpu_are_seen_waiting_for_it_and_an_idle_one_is_not() -> None:
    burn = (
        f"import os, sys, time\nos.sched_setaffinity(0, {{{min(os.sched_getaffinity(0))}}})\n"
        "t=time.process_time()\nwhile time.process_time()-t<0.5: pass\nsys.stdin.read()"
    )
    busy = [subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE) for _ in range(2)]
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)  # interpreters started
        window = Window({"a": busy[0].pid, "b": busy[1].pid, "idle": idle.pid})
        window.start()
        deadline = time.monotonic() + 30
        while min(proc_cpu_s(p.pid) for p in busy) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        window.stop()
        waits = window.runq_waits()
    finally:
        for p in (*busy, idle):
            p.communicate(b"")
    assert waits["a"] + waits["b"] > 0.2  # one CPU for two: each waits while the other runs
    assert waits["idle"] < (waits["a"] + waits["b"]) / 4  # blocked on stdin: hardly ever runnable


def test_above_idle_takes_off_each_process_idle_rate_over_the_window() -> None:
    idle = [Cost("classifier", 0, 0.6, 20.0), Cost("push", 0, 0.2, 20.0)]  # 30 and 10 ms/s
    run = [Cost("classifier", 1000, 12.0, 100.0), Cost("push", 1000, 0.5, 100.0), Cost("new", 10, 1.0, 100.0)]
    above = above_idle(run, idle)
    assert above["classifier"] == pytest.approx(12.0 - 3.0)
    assert above["push"] == 0.0  # busier than idle would have polled less: never negative
    assert above["new"] == 1.0  # no idle figure: nothing taken off
