"""The routing table: shipped defaults, matching rules and validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumers.classifier.routing import DEFAULT_CHANNELS, RoutingError, load_routing, parse_routing
from consumers.infra.settings import ClassifierSettings
from schemas.models import Channel, Lane, Tier

E, S, P, IA, W = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP, Channel.WEBHOOK


@pytest.fixture(scope="module")
def table() -> Any:
    return load_routing(ClassifierSettings().routing_file)


@pytest.mark.parametrize(
    ("event_type", "tier", "category", "channels", "opt_in", "template", "lane"),
    [
        ("security_alert", Tier.CRITICAL, "security", (P, S, E), (), "security_alert", Lane.PRIORITY),
        ("payment_receipt", Tier.HIGH, "payments", (P,), (), "payment_receipt", Lane.PRIORITY),
        ("login_code", Tier.HIGH, "auth", (P,), (), "login_code", Lane.PRIORITY),
        ("comment_reply", Tier.MEDIUM, "activity", (IA,), (P,), "comment_reply", Lane.PRIORITY),
        ("mention", Tier.MEDIUM, "activity", (IA,), (P,), "mention", Lane.PRIORITY),
        ("activity.like", Tier.MEDIUM, "activity", (IA,), (P,), "activity", Lane.PRIORITY),
        ("marketing.weekly", Tier.LOW, "marketing", (E,), (), "marketing", Lane.BULK),
        ("tips.onboarding", Tier.LOW, "tips", (E,), (), "tips", Lane.BULK),
        ("system.invoice.paid", Tier.SYSTEM, "system", (W,), (), "", Lane.PRIORITY),
    ],
)
def test_shipped_defaults(  # noqa: PLR0917 - one parameter per table column
    table: Any,
    event_type: str,
    tier: Tier,
    category: str,
    channels: tuple[Channel, ...],
    opt_in: tuple[Channel, ...],
    template: str,
    lane: Lane,
) -> None:
    route = table.match(event_type)
    assert route is not None
    assert (route.tier, route.category, route.channels, route.opt_in, route.template, route.lane) == (
        tier,
        category,
        channels,
        opt_in,
        template,
        lane,
    )


@pytest.mark.parametrize("event_type", ["unknown", "marketing", "security_alert.x", "Security_Alert", ""])
def test_unknown_types_match_nothing(table: Any, event_type: str) -> None:
    assert table.match(event_type) is None


@pytest.mark.parametrize("tier", list(Tier))
def test_default_tier_routes_unknown_types(tier: Tier) -> None:
    t = load_routing(ClassifierSettings().routing_file, default_tier=tier)
    route = t.match("brand_new_type")
    assert route is not None and route.tier is tier and route.channels == DEFAULT_CHANNELS[tier]
    assert t.match("payment_receipt").tier is Tier.HIGH  # type: ignore[union-attr]


def _r(match: str, **kw: Any) -> dict[str, Any]:
    return {"match": match, "tier": "medium", "category": "c", "channels": ["in_app"], "template": "t", **kw}


def test_exact_beats_glob_and_first_glob_wins() -> None:
    t = parse_routing(
        {
            "routes": [
                _r("a.*", template="broad"),
                _r("a.b*", template="narrow"),
                _r("a.bc", template="exact"),
            ]
        }
    )
    assert t.match("a.bc").template == "exact"  # type: ignore[union-attr]
    assert t.match("a.bd").template == "broad"  # type: ignore[union-attr]
    assert t.match("a.x").template == "broad"  # type: ignore[union-attr]
    assert t.match("b") is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"routes": [_r("x", channels=["fax"])]}, "unknown channel 'fax'"),
        ({"routes": [_r("x", tier="urgent")]}, "bad tier 'urgent'"),
        ({"routes": [_r("x"), _r("y"), _r("x")]}, "route 3: duplicate pattern 'x' (also route 1)"),
        ({"routes": [_r("x", channels=[])]}, "at least one channel"),
        ({"routes": [_r("x", channels=["push", "push"])]}, "listed twice"),
        ({"routes": [_r("x", opt_in=["in_app"])]}, "in both 'channels' and 'opt_in'"),
        ({"routes": [_r("x", colour="red")]}, "unknown key(s) colour"),
        ({"routes": [_r("x", channels=["webhook"])]}, "webhook is reserved for the system tier"),
        ({"routes": [_r("x", tier="system")]}, "system tier goes to webhook only"),
        ({"routes": [_r("x", template="")]}, "'template' must name"),
        ({"routes": [_r("")]}, "'match' must be"),
        ({"routes": [_r("x", category="")]}, "'category'"),
        ({"routes": []}, "'routes' is empty"),
        ({"route": []}, "top-level 'routes:'"),
        ({"routes": [], "extra": 1}, "unknown top-level"),
        ({"routes": ["x"]}, "expected a mapping"),
    ],
)
def test_validation_errors_say_where_and_why(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError) as info:
        parse_routing(doc, "routing.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("routing.yaml")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="cannot read"):
        load_routing(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    with pytest.raises(RoutingError, match="not valid YAML"):
        load_routing(bad)


def test_fallback_is_only_what_the_fallback_consumer_does() -> None:
    def route(tier: str, channels: list[str], fallback: list[str]) -> dict[str, Any]:
        r = {"match": "x", "tier": tier, "category": "c", "channels": channels, "template": "t"}
        return {"routes": [{**r, "fallback": fallback}]}

    assert parse_routing(route("high", ["push"], ["email"])).match("x").fallback == (Channel.EMAIL,)  # type: ignore[union-attr]
    assert parse_routing(route("medium", ["in_app"], [])).match("x").fallback == ()  # type: ignore[union-attr]
    for tier, channels, fallback in [
        ("low", ["email"], ["email"]),  # nothing falls back from low
        ("high", ["push"], ["sms"]),  # escalation goes to email only
        ("critical", ["push", "sms", "email"], ["email"]),
    ]:
        with pytest.raises(RoutingError, match="'fallback'"):
            parse_routing(route(tier, channels, fallback))


@pytest.mark.parametrize("tier", [Tier.HIGH, Tier.MEDIUM])
def test_default_tier_routes_keep_the_decision_tables_fallback(tier: Tier) -> None:
    table = parse_routing(
        {"routes": [{"match": "a", "tier": "low", "category": "c", "channels": ["email"], "template": "t"}]},
        default_tier=tier,
    )
    route = table.match("unknown.type")
    assert route is not None and route.fallback == (Channel.EMAIL,)
