"""``herald receipt <notification_id> --status delivered|opened|read --user U``: publish a Receipt.

What a client app (or the in-app inbox on read) sends to ``herald.receipts``; handy to
cancel an escalation by hand in the demo.
"""

from __future__ import annotations

import argparse

from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.models import Channel, Receipt, ReceiptStatus, utcnow

__all__ = ["publish_receipt", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("receipt", help="publish a delivered/opened/read receipt for a notification")
    p.add_argument("notification_id")
    p.add_argument("--status", required=True, choices=[s.value for s in ReceiptStatus])
    p.add_argument("--user", required=True, help="the notification's user id")
    p.add_argument("--channel", choices=[c.value for c in Channel], help="channel the receipt is about")
    p.add_argument("--source", default="cli", help="app, inbox, api, cli (default cli)")
    p.set_defaults(func=receipt)


async def publish_receipt(settings: HeraldSettings, receipt: Receipt) -> None:
    """Produce ``receipt`` to the receipts topic, keyed by notification id, acks=all."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    from consumers.runtime.kafka import KafkaUnavailable, create_topics
    from schemas.codec import default_codec

    topic = Topics(settings.topic_prefix).receipts
    await create_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        await producer.start()
        await producer.send_and_wait(
            topic, default_codec().encode(receipt), key=receipt.notification_id.encode()
        )
    except KafkaConnectionError as exc:
        raise KafkaUnavailable(
            f"Kafka is not reachable at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    finally:
        await producer.stop()


async def receipt(settings: HeraldSettings, args: argparse.Namespace) -> int:
    value = Receipt(
        notification_id=args.notification_id,
        user_id=args.user,
        status=ReceiptStatus(args.status),
        at=utcnow(),
        channel=Channel(args.channel) if args.channel else None,
        source=args.source,
    )
    await publish_receipt(settings, value)
    print(f"receipt {value.status.value} for {value.notification_id} published")
    return 0
