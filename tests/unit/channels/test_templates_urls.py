"""URLs bound for href/src pass one filter with a scheme allow-list; the shipped templates use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from channels.templates import TemplateRenderer, UnsafeUrl, url_problem
from schemas.models import Channel

TEMPLATES = Path(__file__).resolve().parents[3] / "consumers" / "templates"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/sale", True),
        ("http://example.com", True),
        ("mailto:news@example.com", True),
        ("  HTTPS://example.com  ", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        (" \x01javascript:alert(1)", False),
        ("java\tscript:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("vbscript:msgbox", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ("//evil.example.com/x", False),
        ("/relative/path", False),
        ("https:///no-host", False),
        ("https://exa\x00mple.com", False),
    ],
)
def test_url_problem(url: str, allowed: bool) -> None:
    assert (url_problem(url) is None) is allowed, url_problem(url)


def test_the_allow_list_is_configurable() -> None:
    assert url_problem("tel:+14155550199", ("https", "tel")) is None
    assert url_problem("http://example.com", ("https",)) is not None


def _marketing(cta_url: str, renderer: TemplateRenderer) -> str:
    content = renderer.render(
        Channel.EMAIL,
        "marketing",
        "en",
        {"headline": "Sale", "body": "50% off", "cta_url": cta_url, "user_id": "u", "locale": "en"},
    )
    assert content.html is not None
    return content.html


def test_a_javascript_cta_url_never_lands_in_an_href() -> None:
    renderer = TemplateRenderer(TEMPLATES)
    assert 'href="https://example.com/sale?a=1&amp;b=2"' in _marketing(
        "https://example.com/sale?a=1&b=2", renderer
    )
    with pytest.raises(UnsafeUrl) as caught:
        _marketing("javascript:alert(1)", renderer)
    assert caught.value.reason == "invalid_url"
    with pytest.raises(UnsafeUrl):
        _marketing('https://x" onmouseover="alert(1)', TemplateRenderer(TEMPLATES, url_schemes=("mailto",)))
    # a quote cannot break out of the attribute: autoescape still applies after the filter
    assert "onmouseover=&#34;" in _marketing('https://x" onmouseover="alert(1)', renderer)


def test_every_href_and_src_in_the_shipped_html_templates_uses_safe_url() -> None:
    attribute = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
    unfiltered = []
    for path in TEMPLATES.rglob("*.html.j2"):
        for value in attribute.findall(path.read_text()):
            if "{{" in value and "safe_url" not in value:
                unfiltered.append(f"{path.relative_to(TEMPLATES)}: {value}")
    assert not unfiltered
