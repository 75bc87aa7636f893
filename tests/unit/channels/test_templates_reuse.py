"""A rendering is reused for a message that would render the same (a broadcast: one payload, many
recipients), and only then: same payload, same values of the message fields the templates read,
no ``recipient``, nothing random."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.templates import TemplateRenderer
from schemas.models import Channel, ChannelMessage, Lane, Tier, utcnow


def _message(
    template: str, user: str = "u1", payload: str = '{"amount": "12.50"}', locale: str = "en"
) -> ChannelMessage:
    return ChannelMessage(
        notification_id=f"n-{user}",
        event_id="e1",
        event_type=template,
        user_id=user,
        channel=Channel.EMAIL,
        lane=Lane.BULK,
        tier=Tier.LOW,
        category="c",
        recipient=f"{user}@example.com",
        template=template,
        locale=locale,
        idempotency_key=f"k-{user}",
        occurred_at=utcnow(),
        payload=payload,
    )


def _email(body: str, subject: str = "Paid {{ amount }}") -> dict[str, str]:
    return {"email.subject.j2": subject, "email.html.j2": body, "email.txt.j2": "{{ amount }}"}


@pytest.fixture
def renderer(tmp_path: Path) -> TemplateRenderer:
    templates = {
        "plain": _email("<p>{{ amount }}</p>"),
        "greets": _email("{% extends '_layouts/base.html.j2' %}{% block body %}{{ amount }}{% endblock %}"),
        "props": _email("{{ recipient.properties.first_name | default('there') }} {{ amount }}"),
        "dice": _email("{{ range(1000) | list | random }}"),
    }
    for name, files in templates.items():
        for locale in ("en", "pt"):
            for file, text in files.items():
                path = tmp_path / name / locale / file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    layout = tmp_path / "_layouts" / "base.html.j2"
    layout.parent.mkdir(parents=True)
    layout.write_text("<html lang='{{ locale }}'>Hi {{ user_id }}: {% block body %}{% endblock %}</html>")
    return TemplateRenderer(tmp_path, "en")


def test_one_payload_to_many_recipients_renders_once(renderer: TemplateRenderer) -> None:
    first = renderer.render_message(_message("plain", "u1"))
    again = renderer.render_message(_message("plain", "u2"))
    assert again is first  # reused, not rendered again
    assert first.html == "<p>12.50</p>"
    other = renderer.render_message(_message("plain", "u3", '{"amount": "99.00"}'))
    assert other.html == "<p>99.00</p>"
    portuguese = renderer.render_message(_message("plain", "u4", locale="pt-BR"))
    assert portuguese.locale == "pt"


def test_a_field_read_by_a_layout_the_template_extends_tells_messages_apart(
    renderer: TemplateRenderer,
) -> None:
    one = renderer.render_message(_message("greets", "u1"))
    two = renderer.render_message(_message("greets", "u2"))
    assert one.html == "<html lang='en'>Hi u1: 12.50</html>"
    assert two.html == "<html lang='en'>Hi u2: 12.50</html>"
    # the same directory for "en" and "en-GB", but the layout reads the message's own locale
    assert renderer.render_message(_message("greets", "u1", locale="en-GB")).html == (
        "<html lang='en-GB'>Hi u1: 12.50</html>"
    )


def test_recipient_properties_are_never_shared(renderer: TemplateRenderer) -> None:
    ana = renderer.render_message(_message("props", "u1"), {"first_name": "Ana"})
    bo = renderer.render_message(_message("props", "u2"), {"first_name": "Bo"})
    assert (ana.html, bo.html) == ("Ana 12.50", "Bo 12.50")


def test_a_random_template_renders_for_each_message(renderer: TemplateRenderer) -> None:
    drawn = {renderer.render_message(_message("dice", f"u{i}")).html for i in range(20)}
    assert len(drawn) > 1


def test_the_kept_renderings_are_bounded(tmp_path: Path) -> None:
    for file, text in _email("<p>{{ amount }}</p>").items():
        path = tmp_path / "plain" / "en" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    small = TemplateRenderer(tmp_path, "en", rendered_cache_size=2)
    first = small.render_message(_message("plain", payload='{"amount": "1"}'))
    small.render_message(_message("plain", payload='{"amount": "2"}'))
    small.render_message(_message("plain", payload='{"amount": "3"}'))  # the first one is dropped
    again = small.render_message(_message("plain", payload='{"amount": "1"}'))
    assert again == first
    assert again is not first


def test_where_templates_were_found_is_kept_for_a_bounded_number_of_keys(tmp_path: Path) -> None:
    # The template (an unrouted event type under a default tier), the locale and the tenant all come
    # from the event: a producer inventing locales must not grow a channel consumer's memory.
    for file, text in _email("<p>{{ amount }}</p>").items():
        path = tmp_path / "plain" / "en" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    small = TemplateRenderer(tmp_path, "en", plan_cache_size=3)
    for i in range(50):
        assert small.render_message(_message("plain", locale=f"x{i:02d}")).html == "<p>12.50</p>"
        assert small.resolve(f"type{i}", Channel.EMAIL, "en") is None
    assert small._plans.cache_info().currsize == 3
    assert small._resolved.cache_info().currsize == 3
    # the oldest key was dropped, not kept forever: asked again, the disk answers afresh
    assert small.resolve("plain", Channel.EMAIL, "x00") == ("plain", "en")
    for file in _email(""):
        (tmp_path / "plain" / "en" / file).unlink()
    for i in range(3):
        small.resolve("plain", Channel.EMAIL, f"y{i}")
    assert small.resolve("plain", Channel.EMAIL, "x00") is None
