"""The README's configuration table is the code's: every variable, with its current default."""

from __future__ import annotations

from pathlib import Path

from consumers.cli.commands import settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_with_its_default() -> None:
    text = README.read_text()
    missing = [row for row in settings_table(markdown=True).splitlines()[2:] if row not in text]
    assert not missing, "README is out of date; regenerate with `herald settings --markdown`:\n" + "\n".join(
        missing
    )


def test_every_setting_says_what_it_is() -> None:
    rows = settings_table(markdown=False).splitlines()
    undescribed = [row for row in rows if "  # " not in row]
    assert not undescribed, "settings without a description (Field(..., description=...)):\n" + "\n".join(
        undescribed
    )
