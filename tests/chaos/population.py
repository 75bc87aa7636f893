"""Who the chaos run notifies, what it sends them, and what the decision table requires: pure.

Users come in kinds that exercise every branch of the decision table (full profiles, no
addresses at all, no device, quiet hours now, marketing opt-out, activity push opt-in) plus
webhook owners for system events. :func:`expectations` is an oracle written from
docs/architecture.md and routing.yaml, independent of the classifier: it says, per event, which
(channel, recipient) must end delivered, suppressed (with which reason), deferred or failed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from consumers.infra import keys
from schemas.models import Channel

__all__ = [
    "KINDS",
    "Expect",
    "Planned",
    "User",
    "ambiguity_allowed",
    "expectations",
    "make_events",
    "make_users",
]

# kind -> share of the population
KINDS: dict[str, float] = {
    "full": 0.40,
    "no_address": 0.10,
    "no_device": 0.12,
    "quiet": 0.12,
    "opted_out": 0.10,
    "push_opt_in": 0.16,
}

# (event type, weight); one of each tier and every route of the routing table
EVENT_MIX: list[tuple[str, float]] = [
    ("security_alert", 0.08),
    ("payment_receipt", 0.08),
    ("login_code", 0.06),
    ("comment_reply", 0.12),
    ("mention", 0.10),
    ("activity.like", 0.12),
    ("marketing.weekly", 0.14),
    ("tips.daily", 0.12),
    ("system.invoice.paid", 0.18),
]
TIER = {
    "security_alert": "critical",
    "payment_receipt": "high",
    "login_code": "high",
    "comment_reply": "medium",
    "mention": "medium",
    "activity.like": "medium",
    "marketing.weekly": "low",
    "tips.daily": "low",
    "system.invoice.paid": "system",
}
CATEGORY = {"critical": "security", "high": "payments", "medium": "activity", "low": "marketing"}


@dataclass(frozen=True)
class User:
    user_id: str
    kind: str
    email: str | None
    phone: str | None
    tokens: tuple[str, ...]
    locale: str = "en"
    timezone: str = "UTC"
    quiet: tuple[time, time] | None = None
    opt_out: tuple[tuple[str, str], ...] = ()  # (category, channel) disabled
    opt_in: tuple[tuple[str, str], ...] = ()  # (category, channel) enabled
    endpoints: tuple[str, ...] = ()  # webhook endpoint ids this user (an org) owns


@dataclass
class Planned:
    """An event the driver will emit, with its payload (markers make SMS texts traceable)."""

    seq: int
    event_id: str
    event_type: str
    user_id: str
    data: dict[str, Any]
    locale: str | None = None
    marker: str = ""


@dataclass(frozen=True)
class Expect:
    """What must become of one (event, channel, recipient)."""

    event_id: str
    event_type: str
    user_id: str
    channel: Channel
    recipient: str
    key: str  # the idempotency key of the message, or the suppression key
    want: str  # deliver | suppressed | deferred | failed_permanent
    reasons: frozenset[str] = field(default_factory=frozenset)
    # "deliver" may instead end failed_permanent/ambiguous: a send in flight at a kill that is not
    # resent because a duplicate would hurt more than a loss (see ambiguity_allowed)
    ambiguous_ok: bool = False


def ambiguity_allowed(tier: str, channel: Channel) -> bool:
    """Whether a send in flight at a kill may end ``failed_permanent``/``ambiguous`` instead of
    delivered (docs/guarantees.md): never for critical and high (a duplicate beats a loss), never
    on in-app and webhooks (idempotent at the receiving end, so always resent)."""
    return tier not in ("critical", "high") and channel not in (Channel.IN_APP, Channel.WEBHOOK)


def make_users(run: str, n: int, *, now_utc: datetime, rnd: random.Random, orgs: int = 4) -> list[User]:
    """``n`` users of every kind (at least one each) plus ``orgs`` webhook owners."""
    kinds = list(KINDS)
    users: list[User] = []
    for i in range(n):
        kind = kinds[i] if i < len(kinds) else rnd.choices(kinds, weights=list(KINDS.values()))[0]
        uid = f"{run}-u{i:04d}-{kind}"
        email = f"{uid}@chaos.example.com"
        phone = f"+1415{rnd.randrange(10**6, 10**7)}"
        tokens = (f"tok-{uid}",)
        locale = rnd.choice(["en", "pt", "pt-BR", "en-GB"])
        if kind == "no_address":
            users.append(User(uid, kind, None, None, (), locale))
        elif kind == "no_device":
            users.append(User(uid, kind, email, phone, (), locale))
        elif kind == "quiet":
            # A window around now that outlasts any run: deferred sends are never released during it.
            start = (now_utc - timedelta(hours=1)).time().replace(second=0, microsecond=0)
            end = (now_utc + timedelta(hours=4)).time().replace(second=0, microsecond=0)
            users.append(User(uid, kind, email, phone, tokens, locale, "UTC", quiet=(start, end)))
        elif kind == "opted_out":
            users.append(
                User(
                    uid,
                    kind,
                    email,
                    phone,
                    tokens,
                    locale,
                    opt_out=(("marketing", "email"), ("tips", "email"), ("payments", "push")),
                )
            )
        elif kind == "push_opt_in":
            users.append(User(uid, kind, email, phone, tokens, locale, opt_in=(("activity", "push"),)))
        else:
            users.append(User(uid, kind, email, phone, tokens, locale))
    for j in range(orgs):
        oid = f"{run}-org{j}"
        # org 0 has no endpoint: system events to it are suppressed no_endpoint
        eps = () if j == 0 else (f"{run}-ep{j}",)
        users.append(User(oid, "org", None, None, (), endpoints=eps))
    return users


def _payload(event_type: str, marker: str, rnd: random.Random) -> dict[str, Any]:
    if event_type == "security_alert":
        return {"device": f"device {marker}", "ip": "203.0.113.7", "location": "Porto"}
    if event_type == "payment_receipt":
        return {"amount": f"{rnd.randrange(1, 500)}.00", "currency": "EUR", "merchant": f"shop {marker}"}
    if event_type == "login_code":
        return {"code": f"{rnd.randrange(10**5, 10**6)}"}
    if event_type == "comment_reply":
        return {"author": "Bruno", "post_title": f"post {marker}", "excerpt": "Agreed!"}
    if event_type == "mention":
        return {"author": "Alice", "context": f"thread {marker}"}
    if event_type.startswith("activity."):
        return {"summary": f"Carla liked {marker}"}
    if event_type.startswith("marketing."):
        return {
            "headline": f"News {marker}",
            "body": "Dark mode is here.",
            "cta_url": "https://example.com/new",
        }
    if event_type.startswith("tips."):
        return {"tip": f"Tip {marker}: press ? for shortcuts"}
    return {"invoice": marker, "amount": "120.00"}


def make_events(run: str, n: int, users: list[User], rnd: random.Random) -> list[Planned]:
    people = [u for u in users if u.kind != "org"]
    orgs = [u for u in users if u.kind == "org"]
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    out: list[Planned] = []
    for seq in range(n):
        event_type = rnd.choices(types, weights=weights)[0]
        user = rnd.choice(orgs if event_type.startswith("system.") else people)
        marker = f"chaos-{run}-{seq}"
        out.append(
            Planned(
                seq,
                f"{run}-e{seq:06d}",
                event_type,
                user.user_id,
                _payload(event_type, marker, rnd),
                marker=marker,
            )
        )
    return out


def _deliver_or_no_device(e: Planned, user: User, channel: Channel) -> tuple[str, frozenset[str]]:
    if channel is Channel.PUSH and not user.tokens:
        return "failed_permanent", frozenset({"no_device"})
    return "deliver", frozenset()


def _channels(tier: str, user: User) -> list[Channel]:
    """The channels the decision table names for a (non-system) tier, with the user's opt-ins."""
    if tier == "critical":
        return [Channel.PUSH, Channel.SMS, Channel.EMAIL]
    if tier == "high":
        return [Channel.PUSH]
    if tier == "medium":
        return [Channel.IN_APP, Channel.PUSH] if ("activity", "push") in user.opt_in else [Channel.IN_APP]
    return [Channel.EMAIL]


def _category(tier: str, event_type: str) -> str:
    if event_type.startswith("tips."):
        return "tips"
    if tier == "high" and event_type == "login_code":
        return "auth"
    return CATEGORY[tier]


def _address(user: User, channel: Channel) -> str | None:
    if channel is Channel.EMAIL:
        return user.email
    if channel is Channel.SMS:
        return user.phone
    return user.user_id


def _expect_on(e: Planned, user: User, tier: str, channel: Channel) -> tuple[str, str, frozenset[str]]:
    """(recipient, expected result, reasons) for one channel of one event."""
    if tier != "critical" and (_category(tier, e.event_type), channel.value) in user.opt_out:
        return "", "suppressed", frozenset({"opted_out"})
    recipient = _address(user, channel)
    if not recipient:
        return "", "suppressed", frozenset({"no_address"})
    if user.quiet is not None and tier != "critical" and channel is not Channel.IN_APP:
        return recipient, "deferred", frozenset({"quiet_hours"})
    return (recipient, *_deliver_or_no_device(e, user, channel))


def expectations(e: Planned, user: User) -> list[Expect]:
    """The decision table (docs/architecture.md) for one event and its recipient's profile."""
    tier = TIER[e.event_type]
    if tier == "system":
        targets = [(Channel.WEBHOOK, ep, "deliver", frozenset[str]()) for ep in user.endpoints]
        if not user.endpoints:
            targets = [(Channel.WEBHOOK, "", "suppressed", frozenset({"no_endpoint"}))]
    else:
        targets = [(channel, *_expect_on(e, user, tier, channel)) for channel in _channels(tier, user)]
    return [
        Expect(
            e.event_id,
            e.event_type,
            e.user_id,
            channel,
            recipient,
            keys.idempotency_key(e.event_id, channel, recipient),
            want,
            reasons,
            want == "deliver" and ambiguity_allowed(tier, channel),
        )
        for channel, recipient, want, reasons in targets
    ]
