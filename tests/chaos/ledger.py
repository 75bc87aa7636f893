"""Every event accounted for: what the providers recorded, what Herald decided, what went to a DLQ.

:class:`Ledger` tails ``herald.outcomes``, every channel topic and every DLQ (manual partition
assignment, incremental), and reads back each fake provider by idempotency key:

* email: moto's ``ses.RawMessage[]``, header ``X-Herald-Idempotency-Key``;
* SMS: moto's ``sns.SMS[]``: SNS has no idempotency parameter, so texts carry a per-event
  marker (``chaos-<run>-<seq>``) that maps them back to their key;
* push: the FCM fake's messages, ``data.idempotency_key``;
* in-app: ``herald_inbox.idempotency_key``;
* webhook: the receiver's accepted deliveries, header ``webhook-id``.

:meth:`Ledger.account` checks each :class:`Expect` and, for every ChannelMessage that reached
a channel topic (escalations, digests and retries included), that it ended somewhere.

"Nothing lost" means every message ends in an outcome this ledger can account for: delivered (the
provider recorded it), or a terminal outcome the decision table expects, or — for a send that was
in flight at the provider when its process was SIGKILLed, on a tier and channel where a duplicate
would hurt more than a loss — ``failed_permanent``/``ambiguous``: reported, not silently dropped,
counted per channel, and bounded (with the duplicates) by the provider calls in flight at the kills.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumers.devstack.kafka_retention import partition_path
from consumers.runtime.topics import dlq
from schemas.codec import DecodeError, default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome
from tests.chaos.pipeline import Pipeline
from tests.chaos.population import Expect, ambiguity_allowed

__all__ = ["Account", "Ledger", "TopicTail"]

_MARKER = re.compile(r"chaos-[A-Za-z0-9]+-\d+")
_TERMINAL = {"failed_permanent", "suppressed", "exhausted"}


class TopicTail:
    """Reads topics from the beginning, then only what is new on each :meth:`poll`.

    A poll is a bounded read: it ends once every position has reached the end offsets taken at its
    start **and** a fetch has come back empty, or after ``idle_fetches`` fetches in a row that return
    nothing, or after ``max_s`` seconds, whichever comes first. The end offsets alone do not end a
    poll: tansu on S3 reports some too low (12 records have shown an end offset of 1), and a tail
    that trusted them read nothing more of that partition while the end stayed low. One
    that fetches never reach (tansu has also reported an end past what a fetch returns) ends the
    poll after a few empty fetches instead of looping forever.
    """

    def __init__(self, bootstrap: str, topics: list[str], idle_fetches: int = 3, max_s: float = 60.0) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.idle_fetches = idle_fetches
        self.max_s = max_s
        self.consumer: AIOKafkaConsumer | None = None
        self.tps: list[TopicPartition] = []
        self.short_polls = 0  # polls that stopped before the end offsets (empty fetches or time)

    async def _start(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        await consumer._client.force_metadata_update()
        for t in self.topics:
            self.tps += [TopicPartition(t, p) for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(self.tps)
        await consumer.seek_to_beginning(*self.tps)
        self.consumer = consumer
        return consumer

    async def poll(self) -> list[Any]:
        consumer = self.consumer or await self._start()
        out: list[Any] = []
        try:
            async with asyncio.timeout(self.max_s):
                end = await consumer.end_offsets(self.tps)
                idle = 0
                while idle < self.idle_fetches and (idle == 0 or await self._behind(consumer, end)):
                    batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                    got = [r for records in batch.values() for r in records]
                    out.extend(got)
                    idle = 0 if got else idle + 1
                if idle >= self.idle_fetches and await self._behind(consumer, end):
                    self.short_polls += 1
        except (TimeoutError, KafkaError):
            # Broker unreachable (or restarting) or a position that never resolves: what was read
            # is kept, the consumer keeps its positions, the next poll goes on from there.
            self.short_polls += 1
        return out

    async def _behind(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
        for tp in self.tps:
            if await consumer.position(tp) < end[tp]:
                return True
        return False

    async def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each partition (what the polls returned so far)."""
        if self.consumer is None:
            return {}
        return {tp: await self.consumer.position(tp) for tp in self.tps}

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


@dataclass
class Account:
    """The verdict of one accounting pass."""

    expected: int = 0
    ok: Counter[str] = field(default_factory=Counter)  # want -> satisfied count
    missing: list[tuple[Expect, str]] = field(default_factory=list)  # not (yet) satisfied, why
    wrong: list[tuple[Expect, str]] = field(default_factory=list)  # satisfied by the wrong thing
    orphans: list[str] = field(default_factory=list)  # channel messages that ended nowhere
    duplicates: Counter[str] = field(default_factory=Counter)  # channel -> extra provider calls, same key
    ambiguous: Counter[str] = field(
        default_factory=Counter
    )  # channel -> keys ended failed_permanent/ambiguous
    forbidden_ambiguous: list[str] = field(default_factory=list)  # ambiguous where the rule resends
    deliveries: Counter[str] = field(default_factory=Counter)  # channel -> distinct keys delivered
    calls: Counter[str] = field(default_factory=Counter)  # channel -> provider calls recorded
    extra: Counter[str] = field(default_factory=Counter)  # deliveries not required by the table
    rekeyed: list[str] = field(default_factory=list)  # one (event, channel, recipient) under two keys
    # channel -> how each expectation ended: delivered, suppressed, deferred, failed_permanent,
    # ambiguous (in flight at a kill, reported), lost (missing or wrong)
    ends: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    @property
    def complete(self) -> bool:
        return (
            not self.missing
            and not self.wrong
            and not self.orphans
            and not self.rekeyed
            and not self.forbidden_ambiguous
        )


class Ledger:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        t = pipeline.topics
        self.outcome_tail = TopicTail(pipeline.stack.kafka, [t.outcomes])
        self.channel_tail = TopicTail(pipeline.stack.kafka, t.channel_topics())
        self.dlq_tail = TopicTail(
            pipeline.stack.kafka, [dlq(x) for x in [t.events, *t.channel_topics(), t.outcomes]]
        )
        self.codec = default_codec()
        self.outcomes: dict[str, list[DeliveryOutcome]] = defaultdict(list)  # idempotency key -> outcomes
        self.by_event: dict[str, list[DeliveryOutcome]] = defaultdict(list)
        self.messages: dict[str, ChannelMessage] = {}  # key -> the message as last seen on a channel topic
        self.dlq: list[Any] = []
        self.provider: dict[str, Counter[str]] = {c.value: Counter() for c in Channel}
        self.sms_markers: Counter[str] = Counter()
        self._seen = {"mail": 0, "sms": 0, "push": 0, "webhook": 0}
        self.webhook_attempts: Counter[str] = Counter()
        # The S3-backed broker deletes old batches its groups have read; the ledger has no group, so it
        # holds what it has not read yet (everything, until its first read).
        self.retention = pipeline.stack.retention
        if self.retention is not None:
            n = pipeline.settings.partitions
            topics = [t for tail in self.tails() for t in tail.topics]
            self.retention.hold(self, {partition_path(t, p): 0 for t in topics for p in range(n)})

    def tails(self) -> tuple[TopicTail, ...]:
        return (self.outcome_tail, self.channel_tail, self.dlq_tail)

    async def close(self) -> None:
        for tail in self.tails():
            await tail.close()
        if self.retention is not None:
            self.retention.release(self)

    # -- reading -------------------------------------------------------------------------------
    async def refresh(self) -> None:
        await self.read_topics()
        await self._read_providers()

    async def read_topics(self) -> None:
        """What is new on the tailed topics (a long run reads as it goes: the S3-backed broker
        deletes batches past its retention)."""
        for r in await self.outcome_tail.poll():
            o = self.codec.decode(r.value, DeliveryOutcome)
            self.outcomes[o.idempotency_key or ""].append(o)
            self.by_event[o.event_id].append(o)
        for r in await self.channel_tail.poll():
            try:
                m = self.codec.decode(r.value, ChannelMessage)
            except DecodeError:
                continue  # bad bytes injected on purpose: the DLQ check covers them
            self.messages[m.idempotency_key] = m
        self.dlq += await self.dlq_tail.poll()
        if self.retention is not None:
            try:
                async with asyncio.timeout(30):  # a position still to resolve waits for the broker
                    positions = {
                        partition_path(tp.topic, tp.partition): offset
                        for tail in self.tails()
                        for tp, offset in (await tail.positions()).items()
                    }
            except TimeoutError:
                return  # the hold stays where it was: lower, so nothing unread goes
            self.retention.hold(self, positions)

    async def _read_providers(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            data = (await client.get(f"{self.p.stack.moto_url}/moto-api/data.json")).json()
        mails = data.get("ses", {}).get("RawMessage", [])
        for m in mails[self._seen["mail"] :]:
            msg = email.message_from_string(m["raw_data"], policy=email.policy.compat32)
            self.provider["email"][str(msg.get("X-Herald-Idempotency-Key", "?"))] += 1
        self._seen["mail"] = len(mails)
        texts = data.get("sns", {}).get("SMS", [])
        for s in texts[self._seen["sms"] :]:
            found = _MARKER.search(str(s.get("message", "")))
            self.sms_markers[found.group(0) if found else "?"] += 1
        self._seen["sms"] = len(texts)
        pushes = self.p.fcm.messages()
        for sent in pushes[self._seen["push"] :]:
            data = sent["message"].get("data") or {}
            self.provider["push"][str(data.get("idempotency_key", "?"))] += 1
        self._seen["push"] = len(pushes)
        hooks = self.p.receiver.deliveries
        for d in hooks[self._seen["webhook"] :]:
            self.webhook_attempts[d.webhook_id or "?"] += 1
            if d.accepted:
                self.provider["webhook"][d.webhook_id or "?"] += 1
        self._seen["webhook"] = len(hooks)
        assert self.p.pool is not None
        rows = await self.p.pool.fetch("SELECT idempotency_key FROM herald_inbox")
        self.provider["in_app"] = Counter(r["idempotency_key"] for r in rows)

    def sms_key_map(self, markers: dict[str, str]) -> None:
        """marker -> sms idempotency key: the SMS records by key."""
        self.provider["sms"] = Counter({markers[m]: n for m, n in self.sms_markers.items() if m in markers})

    # -- the verdict ---------------------------------------------------------------------------
    def account(self, expects: Iterable[Expect], users: set[str]) -> Account:
        acc = Account()
        required: set[str] = set()
        for e in expects:
            acc.expected += 1
            required.add(e.key)
            self._check(e, acc)
        for key, m in self.messages.items():
            if m.user_id not in users:
                continue
            if self.provider[m.channel.value][key]:
                continue
            ends = [o.status.value for o in self.outcomes.get(key, []) if o.status.value in _TERMINAL]
            if not ends:
                acc.orphans.append(
                    f"{m.channel.value} {m.event_type} {key} attempt={m.attempt} user={m.user_id}"
                )
        sends: dict[tuple[str, str, str, bool], set[str]] = defaultdict(set)
        for channel, counter in self.provider.items():
            for key, n in counter.items():
                known = self.messages.get(key)
                if known is None or known.user_id not in users:
                    continue
                acc.calls[channel] += n
                acc.deliveries[channel] += 1
                acc.duplicates[channel] += n - 1
                if key not in required:
                    kind = known.event_type if known.escalated_from is None else "escalation"
                    acc.extra[f"{channel}:{kind}"] += 1
                derived = known.escalated_from is not None or known.event_type == "digest"
                sends[(known.event_id, channel, known.recipient, derived)].add(key)
        # A provider call repeated under another key would be a duplicate nobody can detect.
        acc.rekeyed = [f"{k}: {sorted(v)}" for k, v in sends.items() if len(v) > 1]
        self._ambiguous(acc, users)
        return acc

    def _ambiguous(self, acc: Account, users: set[str]) -> None:
        """Count, per channel, the keys reported ``failed_permanent``/``ambiguous`` (a send in flight
        at a kill, not resent), and flag any on a tier or channel where the rule says resend."""
        for key, outcomes in self.outcomes.items():
            if not any(_is_ambiguous(o) for o in outcomes):
                continue
            m = self.messages.get(key)
            if m is None or m.user_id not in users:
                continue
            acc.ambiguous[m.channel.value] += 1
            if not ambiguity_allowed(m.tier.value, m.channel):
                acc.forbidden_ambiguous.append(f"{m.channel.value} {m.tier.value} {m.event_type} {key}")

    def _check(self, e: Expect, acc: Account) -> None:
        end = self._end(e, acc)
        acc.ends[e.channel.value][end] += 1

    def _end(self, e: Expect, acc: Account) -> str:
        outcomes = self.outcomes.get(e.key, [])
        statuses = [(o.status.value, o.reason or "") for o in outcomes]
        if e.want == "deliver":
            if self.provider[e.channel.value][e.key]:
                acc.ok["delivered"] += 1
                return "delivered"
            if e.ambiguous_ok and ("failed_permanent", "ambiguous") in statuses:
                acc.ok["failed_permanent:ambiguous"] += 1  # in flight at a kill: reported, not lost
                return "ambiguous"
            final = [s for s in statuses if s[0] in _TERMINAL]
            if final:
                acc.wrong.append((e, f"wanted delivery, got {final}"))
            else:
                acc.missing.append((e, f"not delivered; outcomes {statuses}"))
            return "lost"
        match = [s for s in statuses if s[0] == e.want and s[1] in e.reasons]
        if match:
            acc.ok[f"{e.want}:{match[0][1]}"] += 1
            if self.provider[e.channel.value][e.key] and e.want != "failed_permanent":
                acc.wrong.append((e, f"{e.want} but the provider got it"))
                return "lost"
            return e.want
        acc.missing.append((e, f"wanted {e.want} {sorted(e.reasons)}; outcomes {statuses}"))
        return "lost"

    def dlq_reasons(self) -> list[tuple[bytes, str]]:
        out = []
        for r in self.dlq:
            headers = {k: v.decode(errors="replace") for k, v in r.headers or ()}
            out.append((r.value, headers.get("herald-dlq-reason", "")))
        return out


def _is_ambiguous(o: DeliveryOutcome) -> bool:
    return o.status.value == "failed_permanent" and o.reason == "ambiguous"


def summary(
    title: str, acc: Account, facts: dict[str, Any], in_flight: Mapping[str, int] | None = None
) -> str:
    """The table printed at the end of a chaos test: per channel, provider calls, unique keys the
    provider recorded, duplicates (extra calls under the same key), keys reported
    ``failed_permanent``/``ambiguous`` and, for kill runs, the provider calls that were in flight at
    the moments of the kills (the most a crash can turn into a duplicate or an ambiguous outcome)."""
    lines = [f"== chaos: {title} ==", *(f"{k:<28} {v}" for k, v in facts.items())]
    lines.append(f"{'expectations':<28} {acc.expected}")
    for k, v in sorted(acc.ok.items()):
        lines.append(f"  {k:<26} {v}")
    lines.append(
        f"{'channel':<10} {'calls':>7} {'unique keys':>11} {'duplicates':>10} {'ambiguous':>9}"
        f" {'in flight at kills':>19}"
    )
    for c in Channel:
        flight = "" if in_flight is None else str(in_flight.get(c.value, 0))
        lines.append(
            f"{c.value:<10} {acc.calls[c.value]:>7} {acc.deliveries[c.value]:>11} {acc.duplicates[c.value]:>10}"
            f" {acc.ambiguous[c.value]:>9} {flight:>19}"
        )
    if acc.extra:
        lines.append(
            "extra deliveries (escalations, digests): "
            + ", ".join(f"{k}={v}" for k, v in sorted(acc.extra.items()))
        )
    lines.append(
        f"{'missing/wrong/orphans/rekeyed':<28} {len(acc.missing)}/{len(acc.wrong)}/{len(acc.orphans)}/{len(acc.rekeyed)}"
    )
    lines += [f"  ! rekeyed {r}" for r in acc.rekeyed[:10]]
    lines += [f"  ! ambiguous where the rule resends: {a}" for a in acc.forbidden_ambiguous[:10]]
    for e, why in (acc.missing + acc.wrong)[:15]:
        lines.append(f"  ! {e.channel.value} {e.event_type} {e.user_id} {e.key}: {why}")
    for o in acc.orphans[:10]:
        lines.append(f"  ! orphan {o}")
    return "\n".join(lines)
