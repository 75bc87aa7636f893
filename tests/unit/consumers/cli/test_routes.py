"""herald routes check / explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.cli.main import main
from schemas.models import Channel

E, S, P, IA, W = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP, Channel.WEBHOOK


# -- reload -----------------------------------------------------------------------------------------
def _write(path: Path, routes: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"routes": routes}))


ROUTE_A = {"match": "a", "tier": "low", "category": "c", "channels": ["email"], "template": "t"}
ROUTE_B = {"match": "b", "tier": "high", "category": "c", "template": "t", "steps": [{"send": ["sms"]}]}


# -- CLI --------------------------------------------------------------------------------------------
def test_routes_check_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "routing.yaml"
    login = {
        "match": "login_code",
        "tier": "high",
        "category": "auth",
        "template": "login_code",
        "steps": [
            {"send": ["sms"]},
            {"wait": {"until": "delivered", "timeout": "30s"}},
            {"escalate": ["email"]},
        ],
    }
    _write(path, [ROUTE_A, login])
    assert main(["routes", "check", str(path)]) == 0
    assert "OK, 2 routes (1 with their own steps)" in capsys.readouterr().out
    assert main(["routes", "explain", "login_code", "--file", str(path)]) == 0
    assert "t+0 sms; t+30s if undelivered → email" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    _write(
        bad,
        [ROUTE_A, {**login, "steps": [{"send": ["sms"]}, {"wait": {"until": "read"}}, {"send": ["email"]}]}],
    )
    assert main(["routes", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "route 2 (match 'login_code'): step 2 (wait)" in err
