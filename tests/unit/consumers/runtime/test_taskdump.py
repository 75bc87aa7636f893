"""``kill -USR1``: the dump names every task, the frame it is parked in, and each runner's state."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from consumers.runtime.taskdump import format_state, install, report


class _Described:
    def describe(self) -> dict[str, object]:
        return {"assignment": ["t[0]"], "in_flight": "commit 12.0s"}


async def _parked_on_a_commit_that_never_ends(gate: asyncio.Event) -> None:
    await gate.wait()


async def test_the_report_shows_each_task_parked_where_it_waits() -> None:
    gate = asyncio.Event()
    task = asyncio.create_task(_parked_on_a_commit_that_never_ends(gate), name="runner:push")
    await asyncio.sleep(0)
    try:
        text = report([_Described()], ["push"])
    finally:
        gate.set()
        await task
    assert "push: assignment=['t[0]'], in_flight=commit 12.0s" in text
    block = text.split("--- task runner:push", 1)[1].split("--- task", 1)[0]
    assert "_parked_on_a_commit_that_never_ends" in block
    assert "await gate.wait()" in block  # the line it is suspended on


def test_a_state_is_one_line() -> None:
    assert (
        format_state("email", {"ready": False, "batch_age_s": 3.5}) == "email: ready=False, batch_age_s=3.5"
    )


async def test_sigusr1_logs_the_dump_and_the_process_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    remove = install([_Described()], ["push"])
    try:
        with caplog.at_level(logging.WARNING, logger="consumers.runtime.taskdump"):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):
                if caplog.records:
                    break
                await asyncio.sleep(0.01)
    finally:
        remove()
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith("task dump (signal SIGUSR1)")
    assert "push: assignment=['t[0]']" in message
