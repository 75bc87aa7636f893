"""The documentation cannot rot: the settings reference is the code's, the site builds in strict
mode (a broken link or a page missing from the nav fails), the README's links resolve, and the
tutorial's route and templates render for its payloads."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from consumers.classifier.routing import parse_routing
from consumers.cli.commands import settings_table
from consumers.infra.settings import PACKAGE_DIR, HeraldSettings
from consumers.preview import check_templates

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_the_settings_reference_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    missing = [row for row in settings_table(markdown=True).splitlines()[2:] if row not in text]
    assert not missing, "docs/settings.md is out of date; regenerate with `herald settings --markdown`:\n" + (
        "\n".join(missing)
    )


def test_every_setting_says_what_it_is() -> None:
    rows = settings_table(markdown=False).splitlines()
    undescribed = [row for row in rows if "  # " not in row]
    assert not undescribed, "settings without a description (Field(..., description=...)):\n" + "\n".join(
        undescribed
    )


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "settings" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for page in entry.values()}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_the_readmes_relative_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text())
    assert links
    broken = [link for link in links if not (ROOT / link).exists()]
    assert not broken


def _tutorial() -> tuple[str, dict[str, str], list[dict[str, str]]]:
    """The tutorial's route (YAML block), template files (echo lines) and payloads, from the README."""
    text = README.read_text().split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    route = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "match:" in b)
    files = {path: body for body, path in re.findall(r"^echo '(.*)' > (order_shipped/\S+)$", text, re.M)}
    payloads = [ast.literal_eval(m) for m in re.findall(r"data=(\{[^}]*\})", text)]  # the Python emitter
    payloads += [json.loads(m) for m in re.findall(r"--data '(\{[^}]*\})'", text) if m != "{...}"]
    payloads += [json.loads(m) for m in re.findall(r"^echo '(\{.*\})' > order\.json$", text, re.M)]
    return route, files, payloads


def test_the_tutorial_renders_every_channel_in_both_locales(tmp_path: Path) -> None:
    route, files, payloads = _tutorial()
    assert len(files) == 10 and len(payloads) == 3
    templates = tmp_path / "templates"
    shutil.copytree(PACKAGE_DIR / "templates" / "_layouts", templates / "_layouts")
    for path, body in files.items():
        (templates / path).parent.mkdir(parents=True, exist_ok=True)
        (templates / path).write_text(body + "\n")
    routing = parse_routing({"routes": yaml.safe_load(route)})
    settings = HeraldSettings(templates_dir=templates)
    for payload in payloads:
        preview = check_templates("order_shipped", payload, routing=routing, settings=settings)
        assert {c.locale for c in preview.channels} == {"en", "pt"}
        preview.raise_for_problems()
        assert not [c for c in preview.channels if c.missing]
