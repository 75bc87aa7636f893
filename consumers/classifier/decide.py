"""The per-event decision, pure: event + route + profile + now → messages, outcomes, timers.

Two steps around the one I/O in between (the rate limiter):

1. :func:`plan`: per channel and recipient, either a suppression outcome (opted_out,
   no_address, no_endpoint, stale) or a :class:`Pending` message, already marked with its
   quiet-hours release time and the rate-limit bucket it needs.
2. :func:`finalize`: given the limiter's answers, the records to produce (channel messages,
   outcomes) and the scheduler timers to arm (deferred sends).

Order of the checks, per channel: opt-out (never for critical) → address → staleness and
quiet hours → rate limit. A deferred message counts against the rate limit of the hour it
was classified in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from operator import attrgetter

from consumers.classifier.profile import Profile, zone
from consumers.classifier.quiet_hours import QuietAction, QuietDecision, quiet_decision
from consumers.classifier.ratelimit import LimiterDown, LimitRequest, bucket_key, limit_for, on_limiter_down
from consumers.classifier.routing import Route
from consumers.infra import keys
from consumers.runtime.handling import Output
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Timer, publish_timer
from schemas.codec import Codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent, Lane, OutcomeStatus, Tier

__all__ = ["DecideConfig", "Decision", "Pending", "Plan", "finalize", "plan", "recipients_for"]


_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(ChannelMessage))
_message_values = attrgetter(*_MESSAGE_FIELDS)


@dataclass(frozen=True, slots=True)
class DecideConfig:
    topics: Topics
    codec: Codec
    default_locale: str = "en"
    limits: Mapping[str, int] = field(default_factory=dict)
    stale_after: timedelta = timedelta(days=1)
    quiet_channels: frozenset[Channel] = frozenset({Channel.PUSH, Channel.SMS, Channel.EMAIL})
    rate_prefix: str = "herald:rl"
    defer_on_limiter_down: tuple[str, ...] = ("low",)
    limiter_retry: timedelta = timedelta(minutes=5)
    _channel_topics: dict[tuple[Channel, Lane], str] = field(default_factory=dict, repr=False, compare=False)

    def encode_message(self, message: ChannelMessage) -> bytes:
        """``codec.encode`` for the hot path: the record dict built by one C-level attrgetter."""
        return self.codec.encode_record(
            "ChannelMessage", dict(zip(_MESSAGE_FIELDS, _message_values(message), strict=True))
        )

    def channel_topic(self, channel: Channel, lane: Lane) -> str:
        topic = self._channel_topics.get((channel, lane))
        if topic is None:
            topic = self._channel_topics[(channel, lane)] = self.topics.channel(channel, lane)
        return topic


@dataclass(slots=True)
class Pending:
    """A message that goes out (now or at ``until``) unless the rate limiter refuses it."""

    message: ChannelMessage
    key: bytes
    until: datetime | None = None
    limit: LimitRequest | None = None


@dataclass(slots=True)
class Plan:
    event: DomainEvent
    route: Route
    nid: str  # the notification id, computed once per event
    pending: list[Pending] = field(default_factory=list)
    suppressed: list[DeliveryOutcome] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    outputs: list[Output] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    # (channel, decision, reason) per message, for the decisions metric
    counts: list[tuple[str, str, str]] = field(default_factory=list)


def recipients_for(channel: Channel, event: DomainEvent, profile: Profile) -> list[str]:
    """Addresses for a channel; empty when the user has none (→ no_address / no_endpoint)."""
    if channel is Channel.EMAIL:
        return [profile.email] if profile.email else []
    if channel is Channel.SMS:
        return [profile.phone] if profile.phone else []
    if channel is Channel.WEBHOOK:
        return [e.endpoint_id for e in profile.endpoints if e.wants(event.type)]
    return [profile.user_id]  # push and in_app: devices / inbox are found at delivery


def _outcome(
    event: DomainEvent,
    tier: Tier,
    status: OutcomeStatus,
    reason: str,
    now: datetime,
    *,
    nid: str,
    channel: Channel,
    route: Route,
    key: str,
    message: ChannelMessage | None = None,
    not_before: datetime | None = None,
    detail: str | None = None,
) -> DeliveryOutcome:
    return DeliveryOutcome(
        outcome_id=keys.outcome_id(key, status),
        notification_id=nid,
        event_id=event.event_id,
        event_type=event.type,
        user_id=event.user_id,
        tier=tier,
        status=status,
        occurred_at=event.occurred_at,
        recorded_at=now,
        channel=channel,
        lane=route.lane,
        reason=reason,
        detail=detail,
        idempotency_key=message.idempotency_key if message is not None else key,
        not_before=not_before,
        message=message,
    )


def plan(event: DomainEvent, route: Route, profile: Profile, now: datetime, cfg: DecideConfig) -> Plan:
    tier = route.tier
    nid = keys.notification_id(event.event_id, event.user_id)
    out = Plan(event, route, nid)
    channels = list(route.channels)
    channels += [c for c in route.opt_in if profile.preference(route.category, c) is True]
    tz = zone(profile.timezone)
    stale_after = cfg.stale_after if tier is Tier.LOW else None
    quiet: dict[bool, QuietDecision] = {}  # by "does quiet hours apply to this channel"
    limit = limit_for(tier, cfg.limits)
    locale = event.locale or profile.locale or cfg.default_locale
    expires_at = event.occurred_at + cfg.stale_after if tier is Tier.LOW else None
    for channel in channels:
        if tier is not Tier.CRITICAL and profile.preference(route.category, channel) is False:
            key = keys.idempotency_key(event.event_id, channel, "")
            out.suppressed.append(
                _outcome(
                    event,
                    tier,
                    OutcomeStatus.SUPPRESSED,
                    "opted_out",
                    now,
                    nid=nid,
                    channel=channel,
                    route=route,
                    key=key,
                    detail=f"user opted out of {route.category} by {channel.value}",
                )
            )
            continue
        addresses = recipients_for(channel, event, profile)
        if not addresses:
            reason = "no_endpoint" if channel is Channel.WEBHOOK else "no_address"
            key = keys.idempotency_key(event.event_id, channel, "")
            out.suppressed.append(
                _outcome(
                    event,
                    tier,
                    OutcomeStatus.SUPPRESSED,
                    reason,
                    now,
                    nid=nid,
                    channel=channel,
                    route=route,
                    key=key,
                    detail=f"no {channel.value} address on file",
                )
            )
            continue
        applies = channel in cfg.quiet_channels
        decision = quiet.get(applies)
        if decision is None:
            decision = quiet[applies] = quiet_decision(
                now,
                tz,
                profile.quiet if applies else None,
                tier,
                occurred_at=event.occurred_at,
                stale_after=stale_after,
            )
        for address in addresses:
            message = ChannelMessage(
                notification_id=nid,
                event_id=event.event_id,
                event_type=event.type,
                user_id=event.user_id,
                channel=channel,
                lane=route.lane,
                tier=tier,
                category=route.category,
                recipient=address,
                template=route.template,
                locale=locale,
                idempotency_key=keys.idempotency_key(event.event_id, channel, address),
                occurred_at=event.occurred_at,
                tenant=event.tenant,
                timezone=profile.timezone,
                payload=event.payload,
                expires_at=expires_at,
            )
            if decision.action is QuietAction.DROP:
                out.suppressed.append(
                    _outcome(
                        event,
                        tier,
                        OutcomeStatus.SUPPRESSED,
                        "stale",
                        now,
                        nid=nid,
                        channel=channel,
                        route=route,
                        key=message.idempotency_key,
                        message=message,
                        detail="low-tier message too old to send",
                    )
                )
                continue
            if decision.action is QuietAction.DEFER:
                message.not_before = decision.until
            request = None
            if limit is not None:
                request = LimitRequest(
                    bucket_key(cfg.rate_prefix, event.user_id, channel, now), message.idempotency_key, limit
                )
            record_key = (address if channel is Channel.WEBHOOK else event.user_id).encode()
            out.pending.append(Pending(message, record_key, decision.until, request))
    return out


def finalize(p: Plan, admitted: Sequence[bool | None], now: datetime, cfg: DecideConfig) -> Decision:
    """``admitted[i]`` answers ``p.pending[i]``: True/False, or None when the limiter was down."""
    d = Decision()
    tier, route, event = p.route.tier, p.route, p.event
    outcomes_topic = cfg.topics.outcomes
    encode = cfg.codec.encode
    encode_message = cfg.encode_message
    nid, nid_key = p.nid, p.nid.encode()
    for outcome in p.suppressed:
        d.outputs.append(Output(outcomes_topic, encode(outcome), nid_key))
        d.counts.append((str(outcome.channel), "suppressed", outcome.reason or ""))
    for item, ok in zip(p.pending, admitted, strict=True):
        msg = item.message
        note = ""
        if ok is None:
            if on_limiter_down(tier, cfg.defer_on_limiter_down) is LimiterDown.DEFER:
                _defer_until_limiter(d, p, item, now, cfg=cfg, nid_key=nid_key)
                continue
            note = "rate_limiter_unavailable"  # failed open
        elif not ok:
            per_hour = item.limit.limit if item.limit else 0
            outcome = _outcome(
                event,
                tier,
                OutcomeStatus.SUPPRESSED,
                "rate_limited",
                now,
                nid=nid,
                channel=msg.channel,
                route=route,
                key=msg.idempotency_key,
                message=msg,
                detail=f"over {per_hour}/hour for {msg.channel.value}",
            )
            d.outputs.append(Output(outcomes_topic, encode(outcome), nid_key))
            d.counts.append((msg.channel, "suppressed", "rate_limited"))
            continue
        topic = cfg.channel_topic(msg.channel, msg.lane)
        if item.until is None:
            d.outputs.append(Output(topic, encode_message(msg), item.key))
            d.counts.append((msg.channel, "routed", note))
            continue
        timer_key = msg.idempotency_key + ":deferred"
        d.timers.append(publish_timer(timer_key, item.until, topic, item.key, encode_message(msg)))
        outcome = _outcome(
            event,
            tier,
            OutcomeStatus.DEFERRED,
            "quiet_hours",
            now,
            nid=nid,
            channel=msg.channel,
            route=route,
            key=msg.idempotency_key,
            message=msg,
            not_before=item.until,
            detail=f"quiet hours in {msg.timezone}",
        )
        d.outputs.append(Output(outcomes_topic, encode(outcome), nid_key))
        d.counts.append((msg.channel, "deferred", "quiet_hours"))
    return d


def _defer_until_limiter(
    d: Decision, p: Plan, item: Pending, now: datetime, *, cfg: DecideConfig, nid_key: bytes
) -> None:
    """Redis is down and this tier waits for it: re-queue the event for a later classification.

    One timer per event and retry slot: a replay within the slot arms nothing new, and the
    next classification (in a later slot) can defer again if Redis is still down. The low
    tier's staleness TTL bounds how long this can go on.
    """
    msg = item.message
    period = cfg.limiter_retry.total_seconds()
    slot = int(now.timestamp() // period)
    release = datetime.fromtimestamp((slot + 1) * period, now.tzinfo)
    timer_key = keys.derived_key(msg.notification_id, f"limiter-retry:{slot}")
    if not any(t.key == timer_key for t in d.timers):
        d.timers.append(
            publish_timer(
                timer_key, release, cfg.topics.events, p.event.user_id.encode(), cfg.codec.encode(p.event)
            )
        )
    deferred = replace(msg, not_before=release)
    outcome = _outcome(
        p.event,
        p.route.tier,
        OutcomeStatus.DEFERRED,
        "rate_limiter_unavailable",
        now,
        nid=p.nid,
        channel=msg.channel,
        route=p.route,
        key=keys.derived_key(msg.idempotency_key, timer_key),
        message=deferred,
        not_before=release,
        detail="rate limiter (Redis) unavailable; classified again when it is back",
    )
    d.outputs.append(Output(cfg.topics.outcomes, cfg.codec.encode(outcome), nid_key))
    d.counts.append((msg.channel, "deferred", "rate_limiter_unavailable"))
