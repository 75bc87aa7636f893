"""Recipients' custom properties in templates: ``recipient.properties.<name>``; a missing one renders
empty (falsy, so ``default`` and ``if`` work) while a missing payload variable still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channels.templates import TemplateError, TemplateRenderer
from schemas.models import Channel, ChannelMessage, Lane, Tier, utcnow


def _message(template: str, payload: str = "{}", tenant: str | None = "acme") -> ChannelMessage:
    return ChannelMessage(
        notification_id="n1",
        event_id="e1",
        event_type=template,
        user_id="u1",
        channel=Channel.SMS,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="c",
        recipient="+15550100100",
        template=template,
        locale="en",
        idempotency_key="k1",
        occurred_at=utcnow(),
        tenant=tenant,
        payload=payload,
    )


@pytest.fixture
def renderer(tmp_path: Path) -> TemplateRenderer:
    files = {
        "plan/en/sms.txt.j2": "Hi {{ recipient.properties.first_name | default('there') }}, plan "
        "{{ recipient.properties.plan }}{% if recipient.properties.vip %} (VIP){% endif %} "
        "in {{ recipient.properties.address.city }} for {{ recipient.id }}@{{ recipient.tenant }}",
        "strict/en/sms.txt.j2": "{{ amount }} {{ recipient.properties.plan }}",
        "plain/en/sms.txt.j2": "{{ amount }}",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return TemplateRenderer(tmp_path, "en")


@pytest.mark.parametrize(
    ("props", "text"),
    [
        (
            {"first_name": "Ana", "plan": "pro", "vip": True, "address": {"city": "Porto"}},
            "Hi Ana, plan pro (VIP) in Porto for u1@acme",
        ),
        ({"plan": "free"}, "Hi there, plan free in  for u1@acme"),  # missing ones: empty, chained
        (None, "Hi there, plan  in  for u1@acme"),  # no recipient row at all
    ],
)
def test_properties_render_and_missing_ones_are_empty(
    renderer: TemplateRenderer, props: dict[str, Any] | None, text: str
) -> None:
    assert renderer.render_message(_message("plan"), props).text == text


def test_a_missing_payload_variable_still_fails_permanently(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="missing variable"):
        renderer.render_message(_message("strict"), {"plan": "pro"})


def test_only_templates_that_read_recipient_ask_for_properties(renderer: TemplateRenderer) -> None:
    assert renderer.uses_recipient(_message("plan"))
    assert renderer.uses_recipient(_message("strict"))
    assert not renderer.uses_recipient(_message("plain", '{"amount": 1}'))
    assert not renderer.uses_recipient(_message("nope"))  # unknown: rendering reports it
