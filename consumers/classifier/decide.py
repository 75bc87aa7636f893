"""The per-event decision, pure: event + route + profile + now → messages, outcomes, timers.

Two steps around the one I/O in between (the rate limiter):

1. :func:`plan`: per channel and recipient, either a suppression outcome (opted_out,
   no_address, no_endpoint, stale) or a :class:`Pending` message, already marked with its
   quiet-hours release time and the rate-limit bucket it needs.
2. :func:`finalize`: the limiter's answers → the records (channel messages, outcomes) and timers to arm.

Order of the checks, per channel: opt-out (never for critical) → address → staleness and
quiet hours → rate limit. A deferred message counts against the rate limit of the hour it
was classified in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from consumers.classifier.decide_config import DecideConfig
from consumers.classifier.family import Family
from consumers.classifier.profile import Profile, zone
from consumers.classifier.quiet_hours import SEND, QuietAction, QuietDecision, quiet_decision
from consumers.classifier.ratelimit import (
    LimiterDown,
    LimitRequest,
    bucket_scope,
    limit_for,
    on_limiter_down,
)
from consumers.classifier.routing import Route
from consumers.infra import keys
from consumers.runtime.handling import Output
from consumers.scheduler.timer import Timer, deferred_timer, publish_timer
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent, OutcomeStatus, Tier

__all__ = ["DecideConfig", "Decision", "Pending", "Plan", "finalize", "plan", "recipients_for"]


@dataclass(slots=True)
class Pending:
    """A message that goes out (now or at ``until``) unless the rate limiter refuses it."""

    message: ChannelMessage
    key: bytes
    until: datetime | None = None
    limit: LimitRequest | None = None
    family: Family | None = None  # shared with the event's other messages


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
    # Positional, in the dataclass's field order (test_decide checks that order): a keyword call of
    # a 20-field dataclass costs about twice as much, and this runs for every message and outcome.
    return DeliveryOutcome(
        keys.outcome_id(key, status),  # outcome_id
        nid,  # notification_id
        event.event_id,
        event.type,  # event_type
        event.user_id,
        tier,
        status,
        event.occurred_at,
        now,  # recorded_at
        channel,
        route.lane,
        reason,
        detail,
        None,  # provider
        None,  # provider_message_id
        None,  # error_code
        message.idempotency_key if message is not None else key,
        1,  # attempt
        None,  # retry_after_ms
        not_before,
        message,
    )


@dataclass(slots=True)
class _EventPlan:
    """What :func:`plan` works out once per event and shares across its channels and addresses."""

    event: DomainEvent
    route: Route
    profile: Profile
    now: datetime
    cfg: DecideConfig
    nid: str
    locale: str
    stale_after: timedelta | None  # low tier only: older events are dropped, not sent late
    expires_at: datetime | None  # low tier only: when the message is stale
    limit: int | None  # per user x channel x hour; None = unlimited
    bucket: str  # the start of the event's rate-limit bucket keys (bucket_key without channel:hour)
    quiet: dict[bool, QuietDecision] = field(default_factory=dict)  # by "quiet hours apply to the channel"
    family: Family = field(default_factory=Family)

    @classmethod
    def of(
        cls, event: DomainEvent, route: Route, profile: Profile, now: datetime, cfg: DecideConfig
    ) -> _EventPlan:
        low = route.tier is Tier.LOW
        limit = limit_for(route.tier, cfg.limits)
        return cls(  # positional (once per event; see _outcome)
            event,
            route,
            profile,
            now,
            cfg,
            keys.notification_id(event.event_id, event.user_id, event.tenant),  # nid
            event.locale or profile.locale or cfg.default_locale,  # locale
            cfg.stale_after if low else None,  # stale_after
            event.occurred_at + cfg.stale_after if low else None,  # expires_at
            limit,
            ""
            if limit is None
            else bucket_scope(cfg.rate_prefix, event.user_id, event.tenant or ""),  # bucket
        )

    def suppressed(
        self, channel: Channel, reason: str, detail: str, *, key: str, message: ChannelMessage | None = None
    ) -> DeliveryOutcome:
        return _outcome(
            self.event,
            self.route.tier,
            OutcomeStatus.SUPPRESSED,
            reason,
            self.now,
            nid=self.nid,
            channel=channel,
            route=self.route,
            key=key,
            message=message,
            detail=detail,
        )

    def refusal(self, channel: Channel, addresses: Sequence[str]) -> DeliveryOutcome | None:
        """The channel's suppression when the user opted out (never for critical) or has no address."""
        route = self.route
        if channel not in route.opt_in and not self.profile.allows(
            route.tier, route.category, channel, event_type=self.event.type
        ):
            reason, detail = "opted_out", f"user opted out of {route.category} by {channel.value}"
        elif not addresses:
            reason = "no_endpoint" if channel is Channel.WEBHOOK else "no_address"
            detail = f"no {channel.value} address on file"
        else:
            return None
        return self.suppressed(
            channel,
            reason,
            detail,
            key=keys.idempotency_key(self.event.event_id, channel, "", self.event.tenant),
        )

    def quiet_for(self, channel: Channel) -> QuietDecision:
        """Quiet hours and staleness for the channel (computed once per kind of channel)."""
        window = self.profile.quiet if channel in self.cfg.quiet_channels else None
        if window is None and self.stale_after is None:
            return SEND  # what quiet_decision answers without a window, but for the low tier
        applies = window is not None
        decision = self.quiet.get(applies)
        if decision is None:
            decision = self.quiet[applies] = quiet_decision(
                self.now,
                zone(self.profile.timezone),
                window,
                self.route.tier,
                occurred_at=self.event.occurred_at,
                stale_after=self.stale_after,
                until=self.cfg.quiet_until,
            )
        return decision

    def message(self, channel: Channel, address: str) -> ChannelMessage:
        event, route = self.event, self.route
        return ChannelMessage(  # positional, in field order: see _outcome
            self.nid,  # notification_id
            event.event_id,
            event.type,  # event_type
            event.user_id,
            channel,
            route.lane,
            route.tier,
            route.category,
            address,  # recipient
            route.template,
            self.locale,
            keys.idempotency_key(event.event_id, channel, address, event.tenant),
            event.occurred_at,
            event.tenant,
            self.profile.timezone,
            event.payload,
            1,  # attempt
            None,  # not_before
            self.expires_at,
        )

    def pending(self, message: ChannelMessage, decision: QuietDecision) -> Pending:
        """The message held until quiet hours end (if they apply), with the rate-limit bucket it needs."""
        if decision.action is QuietAction.DEFER:
            message.not_before = decision.until
        request = None
        if self.limit is not None:
            bucket = f"{self.bucket}{message.channel}:{self.cfg.hour(self.now)}"  # = bucket_key(...)
            request = LimitRequest(bucket, message.idempotency_key, self.limit)
        record_key = (
            message.recipient if message.channel is Channel.WEBHOOK else self.event.user_id
        ).encode()
        return Pending(message, record_key, decision.until, request, self.family)


def plan(event: DomainEvent, route: Route, profile: Profile, now: datetime, cfg: DecideConfig) -> Plan:
    """Step 1 (see the module's docstring): per channel a suppression, or per address a :class:`Pending`."""
    ep = _EventPlan.of(event, route, profile, now, cfg)
    out = Plan(event, route, ep.nid)
    opted_in = [c for c in route.opt_in if profile.allows(route.tier, route.category, c, opt_in=True)]
    for channel in [*route.channels, *opted_in]:
        addresses = recipients_for(channel, event, profile)
        refused = ep.refusal(channel, addresses)
        if refused is not None:
            out.suppressed.append(refused)
            continue
        decision = ep.quiet_for(channel)
        for address in addresses:
            message = ep.message(channel, address)
            if decision.action is QuietAction.DROP:
                stale = ep.suppressed(
                    channel,
                    "stale",
                    "low-tier message too old to send",
                    key=message.idempotency_key,
                    message=message,
                )
                out.suppressed.append(stale)
            else:
                out.pending.append(ep.pending(message, decision))
    if len(out.pending) == 1:  # no other message to share encoded fields with: encoded whole, cheaper
        out.pending[0].family = None
    return out


def finalize(p: Plan, admitted: Sequence[bool | None], now: datetime, cfg: DecideConfig) -> Decision:
    """Step 2: the records and timers. ``admitted[i]`` answers ``p.pending[i]``: True/False, or None
    when the limiter was down."""
    d = Decision()
    nid_key = p.nid.encode()
    for outcome in p.suppressed:
        d.outputs.append(Output(cfg.topics.outcomes, cfg.codec.encode(outcome), nid_key))
        d.counts.append((str(outcome.channel), "suppressed", outcome.reason or ""))
    for item, ok in zip(p.pending, admitted, strict=True):
        if ok is None and on_limiter_down(p.route.tier, cfg.defer_on_limiter_down) is LimiterDown.DEFER:
            _defer_until_limiter(d, p, item, now, cfg=cfg, nid_key=nid_key)
        elif ok is False:
            _suppress_rate_limited(d, p, item, now, cfg=cfg, nid_key=nid_key)
        elif item.until is None:
            msg = item.message
            note = "rate_limiter_unavailable" if ok is None else ""  # None here: failed open
            d.outputs.append(
                Output(
                    cfg.channel_topic(msg.channel, msg.lane), cfg.encode_message(msg, item.family), item.key
                )
            )
            d.counts.append((msg.channel, "routed", note))
        else:
            _defer_for_quiet_hours(d, p, item, item.until, now, cfg=cfg, nid_key=nid_key)
    return d


def _suppress_rate_limited(
    d: Decision, p: Plan, item: Pending, now: datetime, *, cfg: DecideConfig, nid_key: bytes
) -> None:
    msg = item.message
    per_hour = item.limit.limit if item.limit else 0
    outcome = _outcome(
        p.event,
        p.route.tier,
        OutcomeStatus.SUPPRESSED,
        "rate_limited",
        now,
        nid=p.nid,
        channel=msg.channel,
        route=p.route,
        key=msg.idempotency_key,
        message=msg,
        detail=f"over {per_hour}/hour for {msg.channel.value}",
    )
    d.outputs.append(Output(cfg.topics.outcomes, cfg.codec.encode(outcome), nid_key))
    d.counts.append((msg.channel, "suppressed", "rate_limited"))


def _defer_for_quiet_hours(
    d: Decision, p: Plan, item: Pending, until: datetime, now: datetime, *, cfg: DecideConfig, nid_key: bytes
) -> None:
    """A timer the fallback fires when quiet hours end: it asks consent again; a deferred outcome says so."""
    msg = item.message
    topic = cfg.channel_topic(msg.channel, msg.lane)
    timer_key = msg.idempotency_key + ":deferred"
    data: dict[str, str | bool] = {"tenant": msg.tenant or ""}  # keyed by the user: erased by (tenant, user)
    if msg.channel in p.route.opt_in:
        data["opt_in"] = True  # the message cannot say so
    payload = cfg.encode_message(msg, item.family)
    d.timers.append(deferred_timer(timer_key, until, topic, item.key, payload, data=data))
    outcome = _outcome(
        p.event,
        p.route.tier,
        OutcomeStatus.DEFERRED,
        "quiet_hours",
        now,
        nid=p.nid,
        channel=msg.channel,
        route=p.route,
        key=msg.idempotency_key,
        message=msg,
        not_before=until,
        detail=f"quiet hours in {msg.timezone}",
    )
    d.outputs.append(Output(cfg.topics.outcomes, cfg.codec.encode(outcome), nid_key))
    d.counts.append((msg.channel, "deferred", "quiet_hours"))


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
        event, topic = p.event, cfg.topics.events
        payload, tenant = cfg.codec.encode(event), event.tenant or ""
        d.timers.append(
            publish_timer(timer_key, release, topic, event.user_id.encode(), payload, tenant=tenant)
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
