"""docs/workflows.md: every routing-file snippet loads, and every explained timeline is what Herald prints."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from consumers.classifier.routing import parse_routing
from consumers.cli.routes import describe

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"
_BLOCK = re.compile(r"```(yaml|text)\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in _BLOCK.finditer(DOC.read_text())]


def test_each_snippet_validates_and_explains_as_documented() -> None:
    blocks = _blocks()
    snippets = [body for kind, body in blocks if kind == "yaml"]
    assert len(snippets) == 4  # the four use-cases
    explained = [
        body for kind, body in blocks if kind == "text" and body.startswith("$ herald routes explain")
    ]
    assert len(explained) == 4
    for snippet, shown in zip(snippets, explained, strict=True):
        table = parse_routing(yaml.safe_load(snippet), "docs/workflows.md")
        command, *printed = shown.strip().splitlines()
        event_type = command.rsplit(" ", 1)[1]
        route = table.match(event_type)
        assert route is not None and route.custom
        assert f"{event_type} → {describe(route)}" == "\n".join(printed)
