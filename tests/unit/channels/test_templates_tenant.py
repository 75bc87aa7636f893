"""Tenant template overrides: templates/<tenant>/<template>/<locale>/ before the shared one."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.templates import TemplateRenderer
from schemas.models import Channel


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def renderer(tmp_path: Path) -> TemplateRenderer:
    _write(tmp_path, "welcome/en/sms.txt.j2", "Welcome {{ name }}")
    _write(tmp_path, "welcome/pt/sms.txt.j2", "Bem-vindo {{ name }}")
    _write(tmp_path, "acme/welcome/en/sms.txt.j2", "ACME welcomes {{ name }}")
    return TemplateRenderer(tmp_path, "en")


@pytest.mark.parametrize(
    ("tenant", "locale", "text"),
    [
        ("acme", "en", "ACME welcomes Ana"),  # the tenant's override
        ("acme", "en-GB", "ACME welcomes Ana"),  # through the locale chain
        (
            "acme",
            "pt",
            "Bem-vindo Ana",
        ),  # the tenant's chain ends at en, yet pt exists shared... the override wins
        ("globex", "pt", "Bem-vindo Ana"),  # no override: the shared template
        ("", "en", "Welcome Ana"),
        ("../etc", "en", "Welcome Ana"),  # not a tenant name that can reach another directory
    ],
)
def test_tenant_templates_fall_back_to_the_default(
    renderer: TemplateRenderer, tenant: str, locale: str, text: str
) -> None:
    assert renderer.render(Channel.SMS, "welcome", locale, {"name": "Ana"}, tenant).text == text
