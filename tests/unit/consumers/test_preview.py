"""check_templates: the dry run services call in their own tests, on the shipped routing and templates."""

from __future__ import annotations

import pytest

from channels.templates import TemplateError
from consumers.classifier.routing import parse_routing
from consumers.infra.settings import HeraldSettings
from consumers.preview import UnknownEventType, check_templates
from schemas.models import Channel

RECEIPT = {"amount": "42.00", "currency": "EUR", "merchant": "Livraria"}


def test_every_routed_channel_renders_in_every_locale_the_template_has() -> None:
    preview = check_templates("payment_receipt", RECEIPT)
    assert not preview.problems
    got = {(c.channel, c.locale, c.why) for c in preview.channels}
    assert got == {
        (Channel.PUSH, "en", "channels"),
        (Channel.EMAIL, "en", "fallback"),
        (Channel.PUSH, "pt", "channels"),
        (Channel.EMAIL, "pt", "fallback"),
    }
    pt_email = next(c for c in preview.channels if c.channel is Channel.EMAIL and c.locale == "pt")
    assert pt_email.content is not None and "Livraria" in (pt_email.content.subject or "")
    preview.raise_for_problems()


def test_a_missing_variable_is_named_per_channel_and_locale() -> None:
    preview = check_templates("payment_receipt", {"amount": "1", "currency": "EUR"}, locales=["pt-BR"])
    assert {c.missing for c in preview.channels} == {("merchant",)}
    assert all(c.error and "'merchant' is undefined" in c.error for c in preview.channels)
    with pytest.raises(TemplateError, match=r"push \(pt-BR\): .*merchant"):
        preview.raise_for_problems()


def test_an_unrouted_type_names_the_closest_routes() -> None:
    with pytest.raises(UnknownEventType, match="closest: payment_receipt"):
        check_templates("payment_reciept", RECEIPT)


def test_a_webhook_route_needs_no_template() -> None:
    routing = parse_routing(
        {
            "routes": [
                {
                    "match": "system.*",
                    "tier": "system",
                    "category": "system",
                    "channels": ["webhook"],
                    "template": "none",
                }
            ]
        }
    )
    preview = check_templates("system.invoice.paid", {"x": 1}, routing=routing, settings=HeraldSettings())
    (only,) = preview.channels
    assert only.channel is Channel.WEBHOOK and only.content is None and not only.error
