"""``herald recipients import``: NDJSON and CSV through the real CLI, a per-row error report with
line numbers, and resuming after the last committed line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from consumers.devstack import DevStack

ROOT = Path(__file__).resolve().parents[2]


def _run(stack: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env()}
    return subprocess.run(
        [sys.executable, "-m", "consumers.cli.main", "recipients", "import", *args, "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_ndjson_import_reports_bad_rows_by_line_and_resumes(
    stack: DevStack, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant = f"imp-{uuid.uuid4().hex[:8]}"
    prefix = uuid.uuid4().hex[:8]
    lines = []
    for i in range(2500):
        row: object = {"id": f"{prefix}-{i}", "email": f"u{i}@example.com", "properties": {"n": i}}
        if i == 10:
            row = {"id": f"{prefix}-{i}", "phone": "12345"}  # not E.164
        if i == 20:
            row = "not an object"
        lines.append(json.dumps(row))
    lines.insert(30, "{broken json")
    path = tmp_path / "people.ndjson"
    path.write_text("\n".join(lines) + "\n")

    (tmp_path / "people.ndjson.progress").write_text(
        json.dumps({"line": 1000})
    )  # as if killed after line 1000
    run = _run(stack, str(path), "--tenant", tenant, "--batch", "300")
    assert run.returncode == 0, run.stderr
    count = "SELECT count(*) FROM herald_recipients WHERE tenant = $1"
    assert (
        await pg_pool.fetchval(count, tenant) == 1501
    )  # lines 1001..2501 hold rows 999..2499 (line 31 is the broken one)
    assert json.loads((tmp_path / "people.ndjson.progress").read_text()) == {"line": 2501}

    run = _run(stack, str(path), "--tenant", tenant, "--restart")
    assert run.returncode == 0, run.stderr
    assert await pg_pool.fetchval(count, tenant) == 2498
    assert "created 997" in run.stdout and "updated 1501" in run.stdout and "invalid 3" in run.stdout
    report = [json.loads(x) for x in (tmp_path / "people.ndjson.errors.ndjson").read_text().splitlines()]
    assert [e["line"] for e in report] == [11, 21, 31]
    assert report[0]["id"] == f"{prefix}-10" and report[0]["errors"][0]["loc"] == "phone"
    props = await pg_pool.fetchval(
        "SELECT properties::text FROM herald_recipients WHERE user_id = $1", f"{prefix}-7"
    )
    assert json.loads(props) == {"n": 7}


async def test_csv_import(stack: DevStack, pg_pool: asyncpg.Pool, tmp_path: Path) -> None:
    prefix = uuid.uuid4().hex[:8]
    path = tmp_path / "people.csv"
    path.write_text(
        "id,email,phone,timezone,quiet_start,quiet_end,properties,preferences\n"
        f'{prefix}-a,a@example.com,+14155550101,America/New_York,22:00,07:00,"{{""plan"": ""pro""}}",'
        '"[{""category"": ""marketing"", ""channel"": ""email"", ""enabled"": false}]"\n'
        f"{prefix}-b,,,Nowhere/Zone,,,,\n"
    )
    run = _run(stack, str(path))
    assert run.returncode == 0, run.stderr
    row = await pg_pool.fetchrow("SELECT * FROM herald_recipients WHERE user_id = $1", f"{prefix}-a")
    assert row["phone"] == "+14155550101" and row["timezone"] == "America/New_York"
    assert str(row["quiet_start"]) == "22:00:00" and json.loads(row["properties"]) == {"plan": "pro"}
    pref = await pg_pool.fetchval("SELECT enabled FROM herald_preferences WHERE user_id = $1", f"{prefix}-a")
    assert pref is False
    report = [json.loads(x) for x in (tmp_path / "people.csv.errors.ndjson").read_text().splitlines()]
    assert report == [{"line": 3, "id": f"{prefix}-b", "errors": [report[0]["errors"][0]]}]
    assert report[0]["errors"][0]["loc"] == "timezone"
