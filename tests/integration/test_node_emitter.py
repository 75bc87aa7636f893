"""examples/node (avsc + kafkajs) emits events that Herald classifies and delivers.

The example runs as a Node.js child process against the dev stack; Herald's classifier and in-app
channel consumer run as in `herald run`. What is asserted is what a user sees: the in-app
notification in PostgreSQL, rendered in the event's locale. A record framed the Herald 0.1 way
(reversed fingerprint) on the same topic is delivered too, and counted."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.partitioner import murmur2
from prometheus_client import REGISTRY

from channels.in_app.inbox_pg import InboxService
from consumers.channel.process import build as build_channel
from consumers.classifier.process import build as build_classifier
from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.infra.keys import notification_id
from consumers.infra.resources import Resources
from consumers.runtime.metrics import count_legacy_headers
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, DeliveryOutcome, OutcomeStatus
from tests.conftest import make_settings
from tests.kafka_helpers import produce_raw, wait_for_records
from tests.toolchain import missing_toolchain

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
REPLY = {"author": "Ana", "post_title": "Kafka", "excerpt": "Nice post"}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        missing_toolchain(
            "Node.js (`node`)", "install Node.js 18 or newer (Debian: apt-get install nodejs npm)"
        )
    if (
        not (EXAMPLE / "node_modules" / "avsc").is_dir()
        or not (EXAMPLE / "node_modules" / "kafkajs").is_dir()
    ):
        missing_toolchain("examples/node/node_modules", "run `make setup` (npm ci in examples/node)")
    return node


async def _emit(node: str, stack: DevStack, prefix: str, *args: str) -> list[dict[str, Any]]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka, "HERALD_TOPIC_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLE / "emit.js"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


def _legacy_count() -> float:
    return REGISTRY.get_sample_value("herald_legacy_header_records_total", {"schema": "DomainEvent"}) or 0.0


async def test_node_emitter_events_are_classified_and_delivered(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    node = _node()
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    english, portuguese, old = (f"u-node-{k}-{uuid.uuid4().hex[:8]}" for k in ("en", "pt", "old"))
    codec = default_codec()
    count_legacy_headers(codec)  # as serve() does in every process
    legacy_before = _legacy_count()

    res = Resources(settings)
    specs: list[ProcessSpec] = [
        await build_classifier(res, ProcessOptions(group=f"{settings.topic_prefix}-classifier")),
        await build_channel(res, ProcessOptions(channel="in_app", group=f"{settings.topic_prefix}-in-app")),
    ]
    runners = [r for spec in specs for r in spec.runners]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        sent = await _emit(
            node,
            stack,
            settings.topic_prefix,
            "--type",
            "comment_reply",
            "--user",
            english,
            "--data",
            json.dumps(REPLY),
        )
        sent += await _emit(
            node,
            stack,
            settings.topic_prefix,
            "--type",
            "comment_reply",
            "--user",
            portuguese,
            "--data",
            json.dumps(REPLY),
            "--locale",
            "pt",
        )
        # A record already on the topic from Herald 0.1: fingerprint bytes reversed.
        data = codec.encode(build_event("comment_reply", user_id=old, data=REPLY))
        await produce_raw(settings, topics.events, [(old.encode(), data[:2] + data[2:10][::-1] + data[10:])])
        records = await wait_for_records(settings, topics.outcomes, 3, timeout=90)
    finally:
        for r in runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for spec in specs:
            if spec.on_stop is not None:
                await spec.on_stop()
        await res.close()

    outcomes = {o.user_id: o for o in (codec.decode(r.value, DeliveryOutcome) for r in records)}
    assert {u: (o.channel, o.status) for u, o in outcomes.items()} == {
        u: (Channel.IN_APP, OutcomeStatus.SENT) for u in (english, portuguese, old)
    }
    inbox = InboxService(pg_pool)
    for line, title in zip(sent, ["Ana replied to Kafka", "Ana respondeu em Kafka"], strict=True):
        page = await inbox.get_unread(line["user_id"])
        assert [(i.title, i.body, i.notification_id) for i in page.items] == [
            (title, "Nice post", notification_id(line["event_id"], line["user_id"]))
        ]
    assert [i.title for i in (await inbox.get_unread(old)).items] == ["Ana replied to Kafka"]
    assert _legacy_count() == legacy_before + 1

    # Node's header is the contract's fingerprint, and its partitioner agrees with Herald's (aiokafka,
    # murmur2), so one user's events stay in order whichever language emits them.
    assert {line["header"] for line in sent} == {
        (b"\xc3\x01" + codec.latest("DomainEvent").fingerprint).hex()
    }
    assert settings.partitions > 1
    for line in sent:
        assert line["partition"] == (murmur2(line["user_id"].encode()) & 0x7FFFFFFF) % settings.partitions
