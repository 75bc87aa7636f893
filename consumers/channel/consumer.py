"""The generic channel consumer: one ChannelMessage in, one DeliveryOutcome out.

Per message: drop it as ``suppressed``/``stale`` once ``expires_at`` has passed, or as
``suppressed``/``address_suppressed`` when its address is on the suppression list (hard
bounces, complaints: one lookup per batch, when a list is given); ask the delivery ledger
(:mod:`consumers.channel.ledger`) what already happened to its idempotency key — accepted
before: report the original ``sent`` without calling the provider; in flight from a dead
process: resend or report ``failed_permanent``/``ambiguous`` by
:func:`~consumers.channel.ledger.replay_decision`; render (the adapter's own ``render`` when
it has one, else the Jinja2 templates); mark the key ``in_flight`` once the message holds a
concurrency slot (right before the provider call), deliver through the adapter with a few short
in-process retries of retryable failures (a provider timeout where the crash rule says not to
resend is ``failed_permanent``/``ambiguous`` at once, :func:`~consumers.channel.ledger.resends_unknown`), mark it ``done`` the moment the provider accepts (per
message, not per batch: a kill mid-batch re-sends at most the calls that were in flight); publish the outcome to ``herald.outcomes`` keyed by notification id.
The runtime commits the input offsets only after those outcomes are acknowledged.

Concurrency: a batch is grouped by Kafka key (the user, or the webhook endpoint). Keys run
concurrently, at most ``channel.concurrency`` provider calls in flight; one key's messages run
in offset order, so a user never sees message 2 before message 1 on a channel.

The consumer knows nothing of any provider: it reads ``Outcome.status`` and
``Outcome.provider_code`` only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence

from channels.base import ChannelAdapter, Content, DeliveryError, Outcome
from channels.content import check_content
from channels.templates import TemplateError, TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.done import IN_FLIGHT_ELSEWHERE, RECIPIENT_BACKOFF, Done, already_sent
from consumers.channel.ledger import DeliveryLedger, Entry, Replay, replay_decision, resends_unknown
from consumers.channel.lookups import BatchFacts, SuppressionList, look_up, renderer_reads
from consumers.channel.outputs import OutcomeOutputs
from consumers.infra.backoff import backoff
from consumers.infra.clock import Clock, SystemClock
from consumers.infra.recipient_properties import RecipientProperties
from consumers.infra.settings import ChannelConsumerSettings
from consumers.runtime import metrics
from consumers.runtime.handling import DeadLetter, Incoming, Result
from consumers.runtime.steps import Steps
from consumers.runtime.topics import Topics
from consumers.scheduler.retries import NOT_ATTEMPTED
from schemas.codec import Codec, default_codec
from schemas.errors import RecordError
from schemas.identifiers import check_identifier
from schemas.models import Channel, ChannelMessage, Lane, OutcomeStatus

__all__ = ["ChannelConsumer", "SuppressionList", "retry_delay"]

log = logging.getLogger(__name__)

_CRASHED = "was in flight at the provider when its process died"
_TIMED_OUT = "timed out at the provider"


def retry_delay(retry: int, *, max_s: float, rand: float, retry_after: float | None = None) -> float | None:
    """Delay before in-process retry number ``retry`` (1-based): 0.1 s doubling, ±50 %, at most
    ``max_s``, at least the provider's ``retry_after``.

    ``None`` when the provider asks to wait longer than ``max_s``: that is the fallback
    consumer's job (a scheduler row), not a sleep in this one. Pure.
    """
    if retry_after is not None and retry_after > max_s:
        return None
    return backoff(retry, base=0.1, cap=max_s, jitter=0.5, rand=rand, retry_after=retry_after)


class ChannelConsumer:
    """The runtime :class:`~consumers.runtime.runner.Handler` for any channel and lane."""

    def __init__(
        self,
        *,
        channel: Channel,
        lane: Lane,
        adapter: ChannelAdapter,
        topics: Topics,
        settings: ChannelConsumerSettings,
        renderer: TemplateRenderer | None = None,
        ledger: DeliveryLedger | None = None,
        codec: Codec | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        suppressions: SuppressionList | None = None,
        properties: RecipientProperties | None = None,
    ) -> None:
        self.name = f"channel-{channel.value}-{lane.value}"
        self.suppressions = suppressions
        self.properties = properties  # recipients' custom properties, for templates that use them
        self._checked: Content | None = None  # the last content check_content passed (frozen)
        self._facts = BatchFacts()  # the batch's lookups (cancelled, ledger, suppressed, properties)
        self.channel = channel
        self.lane = lane
        self.adapter = adapter
        self.topics = topics
        self.settings = settings
        self.renderer = renderer
        self.ledger = ledger
        self.cancel_check: CancelCheck | None = None  # herald.cancel: checked before the provider call
        self.codec = codec or default_codec()
        self.clock: Clock = clock or SystemClock()
        self.rand = rand
        self._slots = asyncio.Semaphore(max(1, settings.concurrency))
        self._render_own = getattr(adapter, "render", None)
        self._deadline = float("inf")
        self._provider_seconds = metrics.PROVIDER_SECONDS.labels(channel.value, adapter.provider)
        self._output = OutcomeOutputs(
            channel, lane, provider=adapter.provider, topics=topics, codec=self.codec, clock=self.clock
        )
        # Wall time per step of a batch (make bench prints the timeline, as for the classifier):
        # the batch's lookups, then the deliveries of every key; inside those, the CPU spent
        # rendering and the wall time of the ledger's batched writes.
        self.steps = Steps()

    # -- Handler -------------------------------------------------------------------------------
    def decode(self, raw: bytes) -> ChannelMessage:
        return self.codec.decode(raw, ChannelMessage)

    async def probe(self) -> bool:
        """Do the consumer's stores answer? Asked by the runtime's poison net before it blames a record."""
        async with asyncio.timeout(2.0):
            if self.ledger is not None:
                await self.ledger.client.ping()
            for store in (self.suppressions, self.properties):
                pool = getattr(store, "pool", None)  # PostgreSQL behind the suppression list, properties
                if pool is not None:
                    await pool.fetchval("SELECT 1")
        return True

    async def handle(self, batch: Sequence[Incoming[ChannelMessage]]) -> Sequence[Result]:
        results: list[Result | None] = [None] * len(batch)
        by_key: dict[bytes, list[int]] = {}
        for i, item in enumerate(batch):
            key = item.key if item.key is not None else item.value.user_id.encode()
            by_key.setdefault(key, []).append(i)
        sent: dict[str, str | None] = {}  # keys the provider accepted in this batch
        try:
            with self.steps.step("lookups"):
                self._facts = await look_up(
                    batch,
                    self.channel,
                    cancel_check=self.cancel_check,
                    ledger=self.ledger,
                    suppressions=self.suppressions,
                    properties=self.properties,
                    uses_recipient=renderer_reads(self.renderer, self._render_own),
                )
        except RecordError as exc:  # a value PostgreSQL refused, in one batch-wide lookup
            if len(batch) > 1:
                raise  # the runtime's poison net splits the batch down to the message at fault
            refused = Done(OutcomeStatus.FAILED_PERMANENT, reason=exc.reason, detail=str(exc)[:1000])
            return [[self._output(batch[0].value, refused)]]
        entries = self._facts.entries
        self._deadline = time.monotonic() + self.settings.batch_deadline_s

        async def run_key(indexes: list[int]) -> None:
            failing = False
            for i in indexes:  # one key in offset order
                if failing:
                    # This recipient is failing right now: its later messages go straight to the
                    # fallback's backoff instead of holding the batch (and every other key on the
                    # partition) through their own attempts and in-process retries.
                    results[i] = [self._output(batch[i].value, RECIPIENT_BACKOFF)]
                    continue
                results[i], failing = await self._one(batch[i].value, entries, sent)

        writes = self.ledger.writes if self.ledger is not None else None
        before = writes.seconds if writes is not None else 0.0
        with self.steps.step("deliver"):
            await asyncio.gather(*(run_key(ix) for ix in by_key.values()))
        if writes is not None:  # summed over the script calls of the batch, which may overlap
            self.steps.add("deliver > ledger writes", writes.seconds - before)
        return [r if r is not None else DeadLetter("handler_error", "Missing", "no result") for r in results]

    # -- one message ---------------------------------------------------------------------------
    async def _one(
        self, message: ChannelMessage, entries: dict[str, Entry], sent: dict[str, str | None]
    ) -> tuple[Result, bool]:
        """The message's result, and whether its delivery failed retryably."""
        if message.channel != self.channel:
            return DeadLetter(
                "wrong_channel",
                "WrongChannel",
                f"{message.channel.value} message on the {self.channel.value} topic",
            ), False
        try:
            done = await self._decide(message, entries, sent)
        except RecordError as exc:  # the content is at fault, wherever it was found: never retried
            done = Done(OutcomeStatus.FAILED_PERMANENT, reason=exc.reason, detail=str(exc)[:1000])
        except Exception as exc:  # a bug in an adapter or renderer costs this message, not the batch
            log.exception("%s: unexpected error on %s", self.name, message.idempotency_key)
            metrics.INTERNAL_ERRORS.labels(self.name, type(exc).__name__).inc()
            done = Done(
                OutcomeStatus.FAILED_RETRYABLE,
                reason="internal_error",
                detail=f"{type(exc).__name__}: {exc}"[:500],
            )
        attempted = done.outcome is not None  # the provider was called (not a deadline or a bug)
        return [self._output(message, done)], attempted and done.status is OutcomeStatus.FAILED_RETRYABLE

    async def _decide(
        self, message: ChannelMessage, entries: dict[str, Entry], sent: dict[str, str | None]
    ) -> Done:
        if message.expires_at is not None and message.expires_at <= self.clock.now():
            return Done(
                OutcomeStatus.SUPPRESSED,
                reason="stale",
                detail=f"expired at {message.expires_at.isoformat()}",
            )
        if message.notification_id in self._facts.cancelled:
            return Done(
                OutcomeStatus.CANCELLED, reason="cancel_key", detail="cancelled while waiting in the lane"
            )
        if message.recipient in self._facts.blocked:
            return Done(
                OutcomeStatus.SUPPRESSED,
                reason="address_suppressed",
                detail="the address is on the suppression list (hard bounce or complaint)",
            )
        if time.monotonic() > self._deadline:
            # The batch has run too long (a provider timing out on a long per-key queue): hand the
            # rest to the fallback consumer's backoff instead of blocking the partition (and
            # overrunning max_poll_interval) for many minutes.
            return Done(
                OutcomeStatus.FAILED_RETRYABLE,
                reason="batch_deadline",
                detail=f"not attempted: batch ran past {self.settings.batch_deadline_s:.0f}s",
            )
        key = message.idempotency_key
        if key in sent:  # the same key twice in one batch
            return already_sent(self.adapter.provider, sent[key])
        entry = entries.get(key)
        verdict = Replay.SEND
        if self.ledger is not None:
            verdict = replay_decision(
                entry, tier=message.tier, channel=message.channel, owner=self.ledger.owner
            )
        if verdict is Replay.ACK:
            # Replayed after a send whose outcome may never have reached Kafka: report the
            # same `sent` (same outcome id) and do not call the provider again.
            assert entry is not None
            return already_sent(self.adapter.provider, entry.provider_id)
        if verdict is Replay.WAIT:
            return IN_FLIGHT_ELSEWHERE
        if verdict is Replay.AMBIGUOUS:
            return await self._ambiguous(message, None, _CRASHED)
        # A raw producer can bypass the classifier: the same identifier check, before any lookup.
        check_identifier("user_id", message.user_id)
        content = self._render(message)  # a TemplateError is a RecordError: failed_permanent in _one
        if content is not self._checked:  # a reused rendering (a broadcast) is checked once
            check_content(content)  # InvalidContent before any provider sees it
            self._checked = content
        if entry is not None:  # in flight from a dead process: a duplicate beats a loss here
            metrics.LEDGER_RESENDS.labels(self.channel.value, self.lane.value).inc()
        return await self._send(message, content, entry, sent)

    async def _send(
        self, message: ChannelMessage, content: Content, entry: Entry | None, sent: dict[str, str | None]
    ) -> Done:
        """Deliver under the ledger: ``in_flight`` claimed at the first call, then ``done`` or released."""
        key = message.idempotency_key
        try:
            outcome = await self._deliver(message, content, entry)
        except asyncio.CancelledError:
            raise  # abandoned mid-call (grace period over): the claim stays for a replay to judge
        except Exception:
            if self.ledger is not None:  # not a provider answer (a bug, a content error): a retry may send
                await self.ledger.release(key)
            raise
        if outcome is None:
            return IN_FLIGHT_ELSEWHERE  # another process claimed it since the batch's lookup
        if outcome.ambiguous and not resends_unknown(message.tier, message.channel):
            # The provider timed out holding it: the crash rule, not a resend (ledger: ambiguous).
            return await self._ambiguous(message, outcome, _TIMED_OUT)
        if self.ledger is not None:
            if outcome.status == "sent":
                await self.ledger.done(key, outcome.provider_message_id)
            else:
                await self.ledger.release(key)
        if outcome.status == "sent":
            sent[key] = outcome.provider_message_id
        return Done(OutcomeStatus(outcome.status), outcome)

    async def _ambiguous(self, message: ChannelMessage, outcome: Outcome | None, why: str) -> Done:
        """``failed_permanent``/``ambiguous``, remembered by the ledger so every replay says the same."""
        metrics.AMBIGUOUS_DELIVERIES.labels(self.channel.value, self.lane.value).inc()
        if self.ledger is not None:
            await self.ledger.ambiguous(message.idempotency_key)
        log.warning(
            "%s: %s %s; not resent (%s tier)", self.name, message.idempotency_key, why, message.tier.value
        )
        return Done(
            OutcomeStatus.FAILED_PERMANENT,
            outcome,
            reason="ambiguous",
            detail=f"{why}; not resent for this tier (the provider may or may not have accepted it)",
        )

    def _render(self, message: ChannelMessage) -> Content:
        if self._render_own is not None:
            content: Content = self._render_own(message)
            return content
        if self.renderer is None:
            raise TemplateError(f"no renderer configured for channel {self.channel.value}")
        started = time.perf_counter()
        try:
            return self.renderer.render_message(
                message, self._facts.props.get((message.tenant or "", message.user_id))
            )
        finally:
            self.steps.add("deliver > render", time.perf_counter() - started)

    async def _deliver(
        self, message: ChannelMessage, content: Content, entry: Entry | None
    ) -> Outcome | None:
        """The provider's answer, after a few short in-process retries of retryable failures.

        None: the key's ledger claim was lost to another process (the provider was not called).
        When a later attempt never reached a provider (the first one's failure opened every
        breaker: ``circuit_open``), the earlier real answer is returned, its reason kept: the
        fallback counts it as a real try (consumers/scheduler/retries.py NOT_ATTEMPTED), where the
        last answer alone would say no provider was ever asked. Its retry-after is the larger of
        the two: a refusal rarely says one, and a retry before the breaker closes is wasted."""
        retry = 0
        real: Outcome | None = None  # the last answer a provider gave
        # The whole in-process retry sequence of one message fits in inprocess_budget_s, so a
        # failing recipient holds its batch (and the partition) for seconds at most.
        budget_end = time.monotonic() + self.settings.inprocess_budget_s
        while True:
            async with self._slots:
                # Claimed inside the slot, right before the first call: messages still queued for a
                # slot hold no claim, so a kill leaves `in_flight` only what was at the provider.
                if retry == 0 and not await self._claim(message.idempotency_key, entry):
                    return None
                outcome = await self._attempt(message, content)
            if outcome.reason not in NOT_ATTEMPTED:
                real = outcome
            elif real is not None:
                waits = [w for w in (real.retry_after, outcome.retry_after) if w is not None]
                return dataclasses.replace(real, retry_after=max(waits, default=None))
            if (
                outcome.status != "failed_retryable"
                or (outcome.ambiguous and not resends_unknown(message.tier, message.channel))
                or retry >= self.settings.inprocess_retries
                or time.monotonic() > self._deadline
            ):
                return outcome
            retry += 1
            delay = retry_delay(
                retry,
                max_s=self.settings.inprocess_retry_max_s,
                rand=self.rand(),
                retry_after=outcome.retry_after,
            )
            if delay is None or time.monotonic() + delay > budget_end:
                return outcome
            log.debug(
                "%s: %s retryable (%s); in-process retry %d in %.2fs",
                self.name,
                message.idempotency_key,
                outcome.provider_code,
                retry,
                delay,
            )
            await asyncio.sleep(delay)  # seconds at most: slot released while waiting

    async def _claim(self, key: str, entry: Entry | None) -> bool:
        return self.ledger is None or await self.ledger.claim(key, entry)

    async def _attempt(self, message: ChannelMessage, content: Content) -> Outcome:
        started = time.perf_counter()
        try:
            return await self.adapter.deliver(message, content, idempotency_key=message.idempotency_key)
        except DeliveryError as exc:  # adapters may raise their classified errors
            return Outcome.from_error(exc)
        finally:
            self._provider_seconds.observe(time.perf_counter() - started)
