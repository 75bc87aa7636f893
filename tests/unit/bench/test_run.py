"""bench.run --keep: a run of some phases keeps the others' figures, each with its own run's facts."""

from __future__ import annotations

from typing import Any

from bench.run import merge_results


def _row(name: str, phase: str) -> dict[str, Any]:
    return {"name": name, "value": 1.0, "unit": "s", "phase": phase}


OLD: dict[str, Any] = {
    "machine": {"date": "2026-12-01T22:00:00+00:00", "commit": "abc1234", "load_average": [9.0, 9.0, 9.0]},
    "events": 30_000,
    "phases": {"classifier": "done in 30s", "isolation": "done in 90s"},
    "rows": [_row("dev stack start-up", ""), _row("classifier", "classifier"), _row("old iso", "isolation")],
    "extra": {"load_average": {"classifier": [8.0, 8.0, 8.0]}, "scaling": {"1": 3.0}},
}


def test_phases_not_run_are_kept_with_the_run_that_measured_them() -> None:
    new = {
        "machine": {"date": "2026-12-02T05:00:00+00:00", "commit": "def5678"},
        "events": 200_000,
        "phases": {"isolation": "done in 900s"},
        "rows": [_row("dev stack start-up", ""), _row("new iso", "isolation")],
        "extra": {"runs": {"isolation": {"date": "2026-12-02T05:00:00+00:00", "events": 200_000}}},
    }
    doc = merge_results(OLD, new)
    assert [r["name"] for r in doc["rows"]] == ["dev stack start-up", "classifier", "new iso"]
    assert doc["phases"] == {"classifier": "done in 30s", "isolation": "done in 900s"}
    assert doc["extra"]["runs"]["classifier"] == {
        "date": "2026-12-01T22:00:00+00:00",
        "commit": "abc1234",
        "cpu": None,
        "events": 30_000,
        "load_average": [8.0, 8.0, 8.0],
    }
    assert doc["extra"]["runs"]["isolation"]["events"] == 200_000
    assert doc["extra"]["scaling"] == {"1": 3.0}  # the kept phases' extras stay


def test_a_run_of_every_old_phase_replaces_the_file() -> None:
    new = {
        "machine": {},
        "events": 1,
        "phases": {"classifier": "done", "isolation": "done"},
        "rows": [],
        "extra": {},
    }
    assert merge_results(OLD, new) is new
