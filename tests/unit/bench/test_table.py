"""The benchmark page's table is generated from bench/results.json, and matches it."""

from __future__ import annotations

import json
import math

import pytest

from bench.table import DOC, END, RESULTS, START, main, render, replace_table


def _results(**phases: str) -> dict[str, object]:
    return {
        "machine": {
            "date": "2026-12-01T22:00:00+00:00",
            "commit": "abc1234",
            "cpus": 2,
            "cpu": "Xeon",
            "memory_gib": 24.0,
            "python": "3.11.7",
            "load_average": [9.5, 10.0, 11.0],
        },
        "events": 20_000,
        "phases": phases,
        "rows": [
            {
                "name": "classifier",
                "value": 9123.4,
                "unit": "msg/s",
                "baseline": "raw",
                "ratio": 0.31,
                "goal": "≤ 25 µs CPU/event",
                "note": "a | b",
                "cpu_us": 48.25,
                "util": 0.93,
                "cpu_vs_noop": 4.1,
                "cpu_vs_raw": 2.0,
            },
            {
                "name": "timer lateness p99",
                "value": math.nan,
                "unit": "ms",
                "baseline": "",
                "ratio": None,
                "goal": "",
                "note": "",
                "cpu_us": None,
                "util": None,
                "cpu_vs_noop": None,
                "cpu_vs_raw": None,
            },
        ],
    }


def test_rows_carry_rate_cpu_utilisation_and_ratios() -> None:
    block = render(_results(classifier="done in 30s"))
    assert block.startswith(START) and block.endswith(END)
    assert (
        "| classifier | 9,123 msg/s | 0.31× raw | 48.2 | 0.93 | 4.10 | 2.00 | ≤ 25 µs CPU/event | a \\| b |"
        in block
    )
    assert "| timer lateness p99 | n/a |" in block  # a figure not measured is said, not invented
    assert "load average 9.5 / 10.0 / 11.0" in block


def test_a_failed_phase_is_listed_under_the_table() -> None:
    block = render(_results(classifier="done in 3s", timers="failed after 9s: TimeoutError: slow"))
    assert "- phase `timers`: failed after 9s: TimeoutError: slow" in block
    assert "phase `classifier`" not in block


def test_replace_keeps_the_text_around_the_markers() -> None:
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert replace_table(text, f"{START}\nnew\n{END}") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        replace_table("no markers", "x")


def test_the_published_table_is_the_one_results_json_gives() -> None:
    # Regenerate with `python -m bench.table` after a run; never edit the table by hand.
    assert START in DOC.read_text()
    assert render(json.loads(RESULTS.read_text())) in DOC.read_text()
    assert main(["--check"]) == 0


def test_phases_of_several_runs_each_say_their_run() -> None:
    results = _results(classifier="done in 30s", isolation="done in 900s")
    results["extra"] = {
        "runs": {
            "classifier": {"date": "2026-12-01T22:00:00+00:00", "commit": "abc1234", "events": 30_000},
            "isolation": {
                "date": "2026-12-02T05:00:00+00:00",
                "commit": "def5678",
                "events": 200_000,
                "scale": 0.5,
                "load_average": [3.0, 4.0, 5.0],
            },
        }
    }
    block = render(results)
    assert "- `classifier`: 2026-12-01T22:00:00+00:00 at commit `abc1234`, 30,000 events" in block
    assert (
        "- `isolation`: 2026-12-02T05:00:00+00:00 at commit `def5678`, 200,000 events, 1M sizes × 0.5, "
        "load average 3.0 / 4.0 / 5.0 (1 / 5 / 15 min)" in block
    )
    assert "Measured 2026-12-01" not in block  # no single date claimed for the whole table


def test_phases_of_the_same_hour_at_another_commit_are_separate_runs() -> None:
    # A phase re-run with --keep minutes after a full run, on a new commit: the table must not
    # claim the whole run was measured at the newest commit.
    results = _results(classifier="done in 30s", timers="done in 80s")
    results["extra"] = {
        "runs": {
            "classifier": {"date": "2026-12-02T17:19:00+00:00", "commit": "abc1234", "events": 200_000},
            "timers": {"date": "2026-12-02T17:50:00+00:00", "commit": "def5678", "events": 200_000},
        }
    }
    block = render(results)
    assert "phases measured in separate runs" in block
    assert "at commit `abc1234`" in block and "at commit `def5678`" in block
