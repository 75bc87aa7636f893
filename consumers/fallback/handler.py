"""The fallback consumer's Handler: reads herald.outcomes and herald.receipts in one group.

One runner over both topics keeps the receipt that cancels an escalation and the outcome
that armed it in one process; their order does not matter (a receipt that comes first is
remembered, and the fire handler checks receipts again). Every effect is a timer row or a
row keyed by a deterministic key, written in one transaction per batch, so a replayed
batch arms nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from channels.storage_errors import PG_OUTAGES, classify_pg_error
from consumers.classifier.consent import DIGEST_EVENT_TYPE
from consumers.classifier.routing import DEFAULT_CHANNELS, DEFAULT_FALLBACK
from consumers.fallback.context import FallbackContext
from consumers.fallback.critical import mark_reached, watch_critical
from consumers.fallback.decisions import (
    RECEIPT_SOURCE_API,
    Action,
    decide_outcome,
    escalates_on_exhaustion,
    fallback_outcome,
    push_failure_reason,
    receipt_cancels,
    receipt_is_foreign,
    watches_critical,
)
from consumers.fallback.escalation import PUSH_TIMEOUT
from consumers.fallback.locking import lock_states, lock_watches, state_rows, watch_rows
from consumers.fallback.receipts import keep_early, notification_owner, receipt_outcomes, remember_sent
from consumers.fallback.retry_tries import earlier_tries, sent_by
from consumers.runtime import metrics
from consumers.runtime.handling import Incoming, Output, Result
from consumers.runtime.steps import Steps
from consumers.scheduler.retries import Tries, plan_retry, was_attempted
from consumers.scheduler.store import Timer
from consumers.workflow.context import WorkflowContext
from consumers.workflow.executor import workflow_receipt
from consumers.workflow.preset_run import Entry, digest_entry, enter_all, escalation_entry
from consumers.workflow.presets import digest_after, escalation_after, preset_steps, timings_of
from consumers.workflow.steps import Step
from schemas.errors import DependencyUnavailable, RecordError
from schemas.models import ChannelMessage, DeliveryOutcome, OutcomeStatus, Receipt

__all__ = ["FallbackHandler"]

log = logging.getLogger(__name__)
Signal = DeliveryOutcome | Receipt
_SIGNALS: tuple[type[Signal], ...] = (DeliveryOutcome, Receipt)

# PostgreSQL is down or the connection broke (mid-COMMIT included): the batch is retried, never
# isolated record by record (dead-lettered outcomes would lose their retries).
_OUTAGES = PG_OUTAGES


@dataclass(slots=True)
class _Later:
    """What a run of outcomes arms after its last outcome, in a few statements whatever its size."""

    retries: list[tuple[Timer, str]]  # with the channel (the metric's label)
    entries: list[Entry]  # preset steps entered (escalations, digest items)
    critical: list[tuple[DeliveryOutcome, datetime]]  # critical outcomes watched (when handled)
    tries: dict[str, Tries]  # read before the run: the real tries of its retried sends, by timer key


class FallbackHandler:
    name = "fallback"

    def __init__(
        self,
        ctx: FallbackContext,
        pool: asyncpg.Pool,
        rand: Callable[[], float] = random.random,
        workflows: WorkflowContext | None = None,
    ) -> None:
        self.ctx = ctx
        self.pool = pool
        self.rand = rand
        self.workflows = workflows  # routes with their own steps: the executor, not the tier presets
        self.steps = Steps()  # wall time per step of a batch (make bench prints the timeline)

    def decode(self, raw: bytes) -> Signal:
        # One generated reader per kind (schemas/decoding.py), not fastavro's dict then the dataclass.
        return self.ctx.codec.decode_one_of(raw, _SIGNALS)

    async def handle(self, batch: Sequence[Incoming[Signal]]) -> Sequence[Result]:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                return await self._all(conn, [item.value for item in batch])
        except (*_OUTAGES, asyncpg.PostgresError) as exc:
            if classify_pg_error(exc) == "record":  # the runtime splits down to the record at fault
                raise RecordError(
                    f"PostgreSQL refused: {type(exc).__name__}: {exc}", reason="invalid_record"
                ) from exc
            metrics.DEPENDENCY_ERRORS.labels("postgres", self.name).inc()
            raise DependencyUnavailable(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def probe(self) -> bool:
        """Does PostgreSQL answer? Asked by the runtime's poison net before it blames a record."""
        async with asyncio.timeout(2.0):
            return bool(await self.pool.fetchval("SELECT 1"))

    async def _all(self, conn: asyncpg.Connection, values: list[Signal]) -> list[Result]:
        """In batch order, the state rows and then the critical watches it may write locked first
        in the poller's order (:mod:`consumers.fallback.locking`); each run of outcomes between receipts has its ``sent``
        messages remembered first, in one go (nothing an outcome does reads what another one's
        remembering writes: only receipts read ``herald_sent``, only receipts write receipts)."""
        results: list[Result] = []
        with self.steps.step("lock states"):
            await lock_states(conn, state_rows(values, self._steps, self._custom))
            await lock_watches(conn, watch_rows(values, self._custom))
        start = 0
        while start < len(values):
            first = values[start]
            if isinstance(first, Receipt):
                with self.steps.step("receipts"):
                    results.append(await self._receipt(conn, first))
                start += 1
                continue
            end = start
            while end < len(values) and not isinstance(values[end], Receipt):
                end += 1
            run = [v for v in values[start:end] if isinstance(v, DeliveryOutcome)]
            with self.steps.step("remember sent"):
                early = await remember_sent(self.ctx, conn, run)
            with self.steps.step("read tries"):
                tries = await earlier_tries(conn, self.ctx.scheduler.namespace, run)
            later = _Later([], [], [], tries)  # armed together after the run
            with self.steps.step("outcomes"):
                for outcome, outputs in zip(run, early, strict=True):
                    results.append(await self._outcome(conn, outcome, outputs, later))
            with self.steps.step("arm retries"):
                await self._arm_retries(conn, later.retries)
            with self.steps.step("critical watch"):
                await watch_critical(self.ctx, conn, later.critical)
            with self.steps.step("enter presets"):
                await enter_all(self.ctx, conn, later.entries)
            start = end
        return results

    async def _arm_retries(self, conn: asyncpg.Connection, retries: list[tuple[Timer, str]]) -> None:
        """The run's retry timers in one statement (nothing else in the run reads them)."""
        if not retries:
            return
        new = await self.ctx.scheduler.arm_new([timer for timer, _ in retries], conn)
        for key, channel in {timer.key: channel for timer, channel in retries}.items():
            if key in new:
                metrics.RETRIES_SCHEDULED.labels(channel).inc()

    async def _receipt(self, conn: asyncpg.Connection, receipt: Receipt) -> list[Output]:
        now = self.ctx.clock.now()
        if receipt.source == RECEIPT_SOURCE_API:
            owner = await notification_owner(self.ctx, conn, receipt.notification_id)
            if owner is None:
                # Nothing to end yet (no sent message, workflow or check): it waits apart, so
                # another user's early receipt under the same id cannot take its place.
                await keep_early(conn, receipt, now)
                return []
            user, tenant = owner
            if receipt_is_foreign(
                receipt.source, receipt.user_id, user, tenant=receipt.tenant, owner_tenant=tenant
            ):
                metrics.RECEIPTS_FOREIGN.inc()
                log.warning("receipt for %s from another user than its own: dropped", receipt.notification_id)
                return []  # no row, no effect: it would end another user's escalation, wait or check
        await conn.execute(
            "INSERT INTO herald_receipts (notification_id, status, user_id, channel, at, source) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            receipt.notification_id,
            receipt.status.value,
            receipt.user_id,
            receipt.channel.value if receipt.channel else None,
            receipt.at,
            receipt.source,
        )
        if await workflow_receipt(
            self.ctx.scheduler, conn, receipt.notification_id, receipt.status.value, now
        ):
            log.info(
                "receipt %s for %s: its workflow's wait is over",
                receipt.status.value,
                receipt.notification_id,
            )
        if receipt_cancels(receipt.status):
            channel = receipt.channel.value if receipt.channel else None
            await mark_reached(conn, receipt.notification_id, receipt.at, channel)
        return await receipt_outcomes(self.ctx, conn, receipt)

    async def _outcome(
        self,
        conn: asyncpg.Connection,
        outcome: DeliveryOutcome,
        early: list[Output],
        later: _Later,
    ) -> list[Output]:
        """``early``: the outcomes of receipts that came before this ``sent`` (:func:`remember_sent`);
        a retry's timer (with its channel), the preset step it enters and a critical outcome to
        watch are added to ``later``, for the caller to write with the run's others."""
        if watches_critical(outcome) and not self._custom(outcome.event_type):
            later.critical.append((outcome, self.ctx.clock.now()))
        outputs = list(early)
        message = outcome.message
        actions = decide_outcome(outcome, self._steps(message) if message is not None else ())
        if self._custom(outcome.event_type):  # its steps decide what follows; retries stay per channel
            actions = [a for a in actions if a is Action.RETRY]
        for action in actions:
            if message is None or action is Action.IGNORE:
                continue
            if action is Action.ARM_ESCALATION:
                self._escalation(later.entries, message, reason=PUSH_TIMEOUT)
            elif action is Action.ESCALATE_NOW:
                self._escalation(later.entries, message, reason=push_failure_reason(outcome))
            elif action is Action.ARM_DIGEST_ITEM:
                self._digest(later.entries, message, sent_at=outcome.recorded_at)
            elif action is Action.RETRY:
                outputs += self._retry(outcome, later)
        return outputs

    def _steps(self, message: ChannelMessage) -> tuple[Step, ...]:
        """The workflow of the message's route: its preset expanded (the decision table without a
        routing table)."""
        if self.workflows is None:
            tier = message.tier
            return preset_steps(
                tier,
                DEFAULT_CHANNELS[tier],
                fallback=DEFAULT_FALLBACK.get(tier, ()),
                timings=timings_of(self.ctx.settings),
            )
        route = self.workflows.table.match(message.event_type)
        return route.workflow() if route is not None else ()

    def _escalation(self, entries: list[Entry], message: ChannelMessage, *, reason: str) -> None:
        """The workflow's escalate step after this send, entered on the executor (if it has one)."""
        after = escalation_after(self._steps(message), message.channel)
        if after is not None:
            entries.append(escalation_entry(message, after, reason=reason, now=self.ctx.clock.now()))

    def _digest(self, entries: list[Entry], message: ChannelMessage, *, sent_at: datetime) -> None:
        """The workflow's digest step after this in-app send, entered on the executor (if it has one)."""
        after = digest_after(self._steps(message), message.channel)
        if after is not None:
            entries.append(digest_entry(message, after, sent_at=sent_at))

    def _custom(self, event_type: str) -> bool:
        """Whether the workflow executor, not a tier preset, decides what follows a send of this
        type (and the critical watch leaves it out). A type the table in use has no route for
        (nor a default tier) is a workflow run's whose route was removed or renamed, running from
        its copy: its critical sends come after its own delays, past any watch's deadline."""
        if self.workflows is None:
            return False
        route = self.workflows.table.match(event_type)
        return route is None or route.custom

    def _opt_in(self, message: ChannelMessage) -> bool:
        """Whether the message's channel is an opt-in one of its route (the routing table in use):
        its retry then needs the user's stored yes at release, as the classifier asked. A run's
        send whose route the table lacks (running from its copy) is retried without that check:
        the send step checked the yes when it sent, and the message does not say its step."""
        if self.workflows is None or message.event_type == DIGEST_EVENT_TYPE:
            # no routing table: the defaults have no opt-in channels; a digest is never routed (a
            # route matching every type, opt_in included, must not make its retries need a yes)
            return False
        route = self.workflows.table.match(message.event_type)
        return route is not None and message.channel in route.opt_in

    def _retry(self, outcome: DeliveryOutcome, later: _Later) -> list[Output]:
        assert outcome.message is not None
        message = outcome.message
        key = sent_by(outcome)
        timer = plan_retry(
            outcome,
            self.ctx.settings.retry_schedules_s,
            jitter=self.ctx.settings.retry_jitter,
            now=self.ctx.clock.now(),
            rand=self.rand(),
            topics=self.ctx.topics,
            codec=self.ctx.codec,
            opt_in=self._opt_in(message),
            before=later.tries.get(key) if key is not None else None,
            escalates=escalates_on_exhaustion(message, self._steps(message)),
            max_age_s=self.ctx.settings.unattempted_max_age_s,
        )
        channel = message.channel.value
        if timer is not None:
            later.retries.append((timer, channel))
            return []
        now = self.ctx.clock.now()
        metrics.RETRIES_EXHAUSTED.labels(channel).inc()
        log.warning(
            "retries exhausted for %s on %s after attempt %d",
            message.notification_id,
            channel,
            max(outcome.attempt, message.attempt),
        )
        exhausted = fallback_outcome(
            message,
            OutcomeStatus.EXHAUSTED,
            now=now,
            reason=outcome.reason or outcome.error_code,
            detail=f"retries exhausted after attempt {max(outcome.attempt, message.attempt)}"
            + ("" if was_attempted(outcome) else " (not attempted: the run's time is up)"),
        )
        if escalates_on_exhaustion(message, self._steps(message)):
            self._escalation(later.entries, message, reason="push_failed:exhausted")
        return [self.ctx.outcome_output(exhausted)]
