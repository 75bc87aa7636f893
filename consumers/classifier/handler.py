"""The classifier's runtime handler: one poll batch → routes, profiles, limits, timers, outputs.

Per batch, at most: one PostgreSQL query (profile cache misses), one Redis call (all rate-limit
buckets), one PostgreSQL insert (deferred sends). Payloads are never parsed.

Outages:

* PostgreSQL down (lookups or arming timers) → :class:`DependencyUnavailable`: the runtime retries,
  then pauses and replays from the last commit; nothing is lost or sent twice (keys).
* Redis down → the batch goes on without rate limits: critical and high always flow, tiers in
  ``defer_tiers_when_limiter_down`` (default: low) are re-classified later through a scheduler
  timer with a ``deferred``/``rate_limiter_unavailable`` outcome, the rest fail open. Counted
  in ``herald_dependency_errors_total{dependency="redis"}``.

Bad records: identifiers are checked again here (a raw producer can bypass the emitter) and an
invalid one is dead-lettered as ``invalid_event`` naming the field. PostgreSQL or Redis refusing
a record's values raises a :class:`RecordError`, never an outage; the runtime splits the batch
down to that record and dead-letters it alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from channels.storage_errors import PG_ERRORS, classify_pg_error
from consumers.classifier.decide import DecideConfig, Plan, finalize, plan
from consumers.classifier.lookup import LookupUnavailable, ProfileCache, ProfileKey, key_of
from consumers.classifier.ratelimit import LimiterUnavailable, RateLimiter
from consumers.classifier.routing import Route, RoutingTable
from consumers.fanout.copies import is_broadcast
from consumers.infra.clock import Clock
from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from consumers.runtime.handling import DeadLetter, Incoming, Result
from consumers.runtime.steps import Steps
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler, Timer
from consumers.workflow.cancel import CANCEL_EVENT_TYPE
from consumers.workflow.intake import Intake, Taken
from schemas.codec import Codec, default_codec
from schemas.errors import DependencyUnavailable, RecordError
from schemas.identifiers import InvalidIdentifier, check_event
from schemas.models import DomainEvent

__all__ = ["Classifier", "decide_config"]

log = logging.getLogger(__name__)


def decide_config(settings: HeraldSettings, codec: Codec | None = None) -> DecideConfig:
    c = settings.classifier
    return DecideConfig(
        topics=Topics(settings.topic_prefix),
        codec=codec or default_codec(),
        default_locale=settings.default_locale,
        limits={str(tier): n for tier, n in c.rate_limits_per_hour.items()},
        stale_after=timedelta(seconds=c.low_stale_after_s),
        quiet_channels=frozenset(c.quiet_hours_channels),
        rate_prefix=c.rate_limit_prefix,
        defer_on_limiter_down=tuple(str(t) for t in c.defer_tiers_when_limiter_down),
        limiter_retry=timedelta(seconds=c.limiter_retry_s),
    )


def _invalid_identifier(event: DomainEvent) -> DeadLetter | None:
    """A raw producer can bypass the emitter's check: the same check again, as a dead letter."""
    try:
        check_event(event)
    except InvalidIdentifier as exc:
        return DeadLetter(exc.reason, type(exc).__name__, str(exc))
    return None


class Classifier:
    name = "classifier"

    def __init__(
        self,
        *,
        table: RoutingTable,
        profiles: ProfileCache,
        limiter: RateLimiter,
        scheduler: Scheduler,
        config: DecideConfig,
        clock: Clock,
        intake: Intake | None = None,
        broadcast: bool = False,
    ) -> None:
        self.broadcast = broadcast  # reading topic fan-out copies: each route's broadcast_lane applies
        self._broadcast_routes: dict[str, Route] = {}
        self.table = table
        self.profiles = profiles
        self.limiter = limiter
        self.scheduler = scheduler
        self.config = config
        self.clock = clock
        self.intake = intake
        self._codec = config.codec
        self._redis_warned_at = 0.0
        self.steps = Steps()  # time in the profile lookup, the rate limiter and arming timers
        self._warming: asyncio.Task[None] | None = None  # the lookup started by prepare()

    async def probe(self) -> bool:
        """Does PostgreSQL answer? Asked by the runtime's poison net before it blames a record."""
        async with asyncio.timeout(2.0):
            return bool(await self.profiles.pool.fetchval("SELECT 1"))

    def use_table(self, table: RoutingTable) -> None:
        """Swap the routing table (SIGHUP reload); a batch in progress keeps the one it started with."""
        self.table = table

    def decode(self, raw: bytes) -> DomainEvent:
        return self._codec.decode(raw, DomainEvent)

    def prepare(self, batch: Sequence[Incoming[DomainEvent]]) -> None:
        """Start the profile lookup of a batch fetched ahead (the runner calls this while the
        previous batch is handled); :meth:`handle` joins it. A failure is left to handle."""
        if self._warming is not None and not self._warming.done():
            return  # one lookup ahead at a time: handle() fetches whatever this one did not start
        self._warming = asyncio.create_task(self._warm([key_of(item.value) for item in batch]))

    async def _warm(self, keys: list[ProfileKey]) -> None:
        try:
            await self.profiles.get_many(keys)
        except Exception as exc:  # handle() looks up again and classifies the failure
            log.debug("classifier: lookup ahead failed (%s); handle() retries it", exc)

    def _reject(self, event: DomainEvent, table: RoutingTable) -> DeadLetter | None:
        """The dead letter of an event that cannot be routed at all, else None."""
        invalid = _invalid_identifier(event)
        if invalid is not None:
            return invalid
        if table.match(event.type) is None and event.type != CANCEL_EVENT_TYPE:
            return DeadLetter(
                "unknown_event_type", "UnknownEventType", f"no route matches event type {event.type!r}"
            )
        return None

    def _broadcast_route(self, route: Route) -> Route:
        found = self._broadcast_routes.get(route.match)
        if found is None:
            found = dataclasses.replace(route, lane_override=route.broadcast_lane)
            self._broadcast_routes[route.match] = found
        return found

    def _triage(
        self, batch: Sequence[Incoming[DomainEvent]], results: list[Result | None], table: RoutingTable
    ) -> list[tuple[int, DomainEvent]]:
        """The events to classify; the others get their result here (dead-lettered or skipped)."""
        routed: list[tuple[int, DomainEvent]] = []
        for i, item in enumerate(batch):
            rejected = self._reject(item.value, table)
            if rejected is not None:
                results[i] = rejected
            elif is_broadcast(item.value):
                results[i] = ()  # addressed to a topic: herald run fanout makes one event per subscriber
            else:
                routed.append((i, item.value))
        return routed

    async def handle(self, batch: Sequence[Incoming[DomainEvent]]) -> Sequence[Result]:
        now = self.clock.now()
        table = self.table  # one table per batch, even if a reload swaps it meanwhile
        results: list[Result | None] = [None] * len(batch)
        routed = self._triage(batch, results, table)
        taken = await self._intake(routed, table, now)
        for i, result in taken.results.items():
            results[i] = result
        routed = [(i, e) for i, e in routed if i not in taken.results]
        if not routed:
            await self._arm(taken.timers)
            return [r for r in results if r is not None]

        try:
            with self.steps.step("profile lookup"):
                profiles = await self.profiles.get_many(key_of(e) for _, e in routed)
        except LookupUnavailable as exc:
            metrics.DEPENDENCY_ERRORS.labels("postgresql", self.name).inc()
            raise DependencyUnavailable(f"recipient lookup failed: {exc}") from exc

        plans: list[tuple[int, Plan]] = []
        for i, event in routed:
            route = table.match(event.type)
            assert route is not None
            if self.broadcast:
                route = self._broadcast_route(route)
            plans.append((i, plan(event, route, profiles[key_of(event)], now, self.config)))

        with self.steps.step("rate limiter"):
            answers = await self._acquire(plans)
        timers: list[Timer] = list(taken.timers)
        decisions: Counter[tuple[str, str, str, str]] = Counter()
        tiers: Counter[str] = Counter()
        for i, p in plans:
            d = finalize(p, answers[i], now, self.config)
            results[i] = d.outputs
            timers += d.timers
            route_tier = p.route.tier  # a StrEnum: its value as a label and a key (``.value`` is slow)
            tiers[route_tier] += 1
            for channel, decision, reason in d.counts:
                decisions[(route_tier, channel, decision, reason)] += 1

        with self.steps.step("arm timers"):
            await self._arm(timers, taken.index, now)

        for tier, n in tiers.items():
            metrics.EVENTS_CLASSIFIED.labels(tier).inc(n)
        for labels, n in decisions.items():
            metrics.CLASSIFIER_DECISIONS.labels(*labels).inc(n)
        return [r for r in results if r is not None]

    async def _intake(
        self, routed: list[tuple[int, DomainEvent]], table: RoutingTable, now: datetime
    ) -> Taken:
        if self.intake is None or not routed:
            return Taken()
        try:
            return await self.intake.take(routed, table, now)
        except PG_ERRORS as exc:
            if classify_pg_error(exc) == "record":
                raise RecordError(f"cancellation refused: {exc}", reason="invalid_event") from exc
            metrics.DEPENDENCY_ERRORS.labels("postgresql", self.name).inc()
            raise DependencyUnavailable(f"cancellation failed: {exc}") from exc

    async def _arm(
        self, timers: list[Timer], index: Sequence[tuple[str, str]] = (), now: datetime | None = None
    ) -> None:
        """Timers (deferred, scheduled, workflow starts) and the cancel index, before outputs are returned:
        the runtime commits offsets only after the outputs are acked, so a crash after this point
        replays into ON CONFLICT DO NOTHING."""
        try:
            if timers:
                await self.scheduler.arm(timers)
            if index and self.intake is not None and now is not None:
                await self.intake.canceller.index(index, now)
        except PG_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # the runtime splits to the record at fault
                raise RecordError(f"arming deferred sends refused: {exc}", reason="invalid_event") from exc
            metrics.DEPENDENCY_ERRORS.labels("postgresql", self.name).inc()
            raise DependencyUnavailable(f"arming deferred sends failed: {exc}") from exc

    async def _acquire(self, plans: list[tuple[int, Plan]]) -> dict[int, list[bool | None]]:
        """Admission per pending message, indexed like ``plans``; None everywhere Redis could not answer."""
        requests = [item.limit for _, p in plans for item in p.pending if item.limit is not None]
        granted: list[bool] | None = []
        if requests:
            try:
                granted = await self.limiter.acquire(requests)
            except LimiterUnavailable as exc:
                metrics.DEPENDENCY_ERRORS.labels("redis", self.name).inc()
                now = time.monotonic()
                if now - self._redis_warned_at > 30:
                    self._redis_warned_at = now
                    log.warning(
                        "classifier: rate limiter unavailable (%s): critical/high/medium/system flow "
                        "unlimited, deferred tiers are re-queued",
                        exc,
                    )
                granted = None
        answers: dict[int, list[bool | None]] = {}
        it = iter(granted) if granted is not None else None
        for i, p in plans:
            row: list[bool | None] = []
            for item in p.pending:
                if item.limit is None:
                    row.append(True)
                elif it is None:
                    row.append(None)
                else:
                    row.append(next(it))
            answers[i] = row
        return answers
