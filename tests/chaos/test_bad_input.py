"""The bad-input matrix, in the middle of a live stream: each gets its documented error, the stream goes on.

| input                                   | documented result                                        |
|-----------------------------------------|----------------------------------------------------------|
| truncated Avro                          | herald.events.dlq, reason ``malformed``                  |
| wrong schema fingerprint                | herald.events.dlq, reason ``unknown_schema``             |
| unknown event type                      | herald.events.dlq, reason ``unknown_event_type``         |
| oversized event (> max_message_bytes)   | herald.events.dlq, reason ``too_large``                  |
| payload missing a template variable     | ``failed_permanent`` reason ``template_error``           |
| invalid email address                   | ``failed_permanent`` reason ``invalid_address``          |
| invalid phone                           | refused by the recipients table (CHECK); a message that  |
|                                         | carries one anyway: ``failed_permanent invalid_address`` |
| 10 KB push body                         | ``failed_permanent payload_too_large``: the payload is   |
|                                         | also FCM ``data``, which alone overflows 4096 bytes; the |
|                                         | SMS of it too; its email is sent                         |
| 3 KB push body                          | body truncated to fit FCM's 4096 bytes, and sent         |
| unknown locale                          | rendered in the default locale (``en``) and sent         |
| webhook URL at 169.254.169.254          | ``failed_permanent`` reason ``blocked_destination``,     |
|                                         | error code ``metadata`` (SSRF guard), no request made    |
| NUL in user_id (raw producer)           | herald.events.dlq, reason ``invalid_event``              |
| empty user_id (raw producer)            | herald.events.dlq, reason ``invalid_event``              |
| 100 KB user_id (raw producer)           | herald.events.dlq, reason ``invalid_event``              |
| NUL / lone surrogate in a payload value | in-app ``failed_permanent invalid_content``              |
| payload nested 20,000 deep (raw)        | in-app ``failed_permanent invalid_content``              |
| ``cta_url: javascript:alert(1)``        | email ``failed_permanent invalid_url`` (no href)         |
| webhook URL ``http://0177.0.0.1/``      | ``failed_permanent invalid_url`` (stored before          |
|                                         | registration refused such URLs), no request made         |
| SMS to ``+999999999999``                | ``failed_permanent invalid_address`` (no country code)   |
"""

from __future__ import annotations

import json
import time

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.emitter import build_event
from consumers.infra import keys
from schemas.codec import MAGIC, default_codec
from schemas.models import Channel, ChannelMessage, DomainEvent, Lane, Tier
from tests.chaos.conftest import new_run
from tests.chaos.driver import Knobs
from tests.chaos.ledger import Ledger, summary
from tests.chaos.pipeline import Pipeline
from tests.chaos.population import Expect, Planned, User

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


def _expect(e: Planned, channel: Channel, recipient: str, want: str, *reasons: str) -> Expect:
    return Expect(
        e.event_id,
        e.event_type,
        e.user_id,
        channel,
        recipient,
        keys.idempotency_key(e.event_id, channel, recipient),
        want,
        frozenset(reasons),
    )


async def test_bad_input_gets_its_documented_error_and_the_stream_goes_on(
    pipeline: Pipeline, ledger: Ledger, chaos_knobs: Knobs, capsys: pytest.CaptureFixture[str]
) -> None:
    run = new_run(pipeline, users=20, events=200, seed=30)
    rid = run.events[0].event_id.split("-")[0]
    full = User(
        f"{rid}-x-full",
        "full",
        f"{rid}-x-full@chaos.example.com",
        "+14155550199",
        (f"tok-{rid}-x-full",),
        locale="pt",
    )
    bad_email = User(f"{rid}-x-bademail", "full", "not-an-email", None, (f"tok-{rid}-x-bad",))
    ssrf_org = User(f"{rid}-x-ssrf", "org", None, None, ())
    octal_org = User(f"{rid}-x-octal", "org", None, None, ())
    cta = User(f"{rid}-x-cta", "full", f"{rid}-x-cta@chaos.example.com", None, ())
    run.users += [full, bad_email, ssrf_org, octal_org, cta]
    await pipeline.seed(run.users)
    assert pipeline.pool is not None
    async with pipeline.pool.acquire() as conn:
        await pipeline.add_endpoint(
            conn, f"{rid}-ep-ssrf", ssrf_org.user_id, "http://169.254.169.254/latest/meta-data/"
        )
        # stored directly: a row from before registration refused URLs delivery cannot parse
        await pipeline.add_endpoint(conn, f"{rid}-ep-octal", octal_org.user_id, "http://0177.0.0.1/")
        with pytest.raises(asyncpg.CheckViolationError):  # an invalid phone never gets into a profile
            await conn.execute(
                "INSERT INTO herald_recipients (user_id, phone) VALUES ($1, '12345')", f"{rid}-x-badphone"
            )

    codec = default_codec()
    good = codec.encode(build_event("payment_receipt", user_id=full.user_id, data={"amount": "1"}))
    template = build_event("comment_reply", user_id=full.user_id)

    def raw_event(event_id: str, user_id: str, payload: str = "{}") -> DomainEvent:
        # what a raw producer can write: the emitter would refuse these identifiers
        return DomainEvent(event_id, "comment_reply", template.occurred_at, user_id, payload=payload)

    raw_bad = {  # label -> (bytes, the documented DLQ reason)
        "malformed": (good[: len(good) // 2], "malformed"),
        "unknown_schema": (MAGIC + b"\x00\x11\x22\x33\x44\x55\x66\x77" + good[10:], "unknown_schema"),
        "unknown_event_type": (
            codec.encode(build_event("no_such_event", user_id=full.user_id)),
            "unknown_event_type",
        ),
        "too_large": (
            codec.encode(
                build_event("mention", user_id=full.user_id, data={"author": "A", "context": "x" * 300_000})
            ),
            "too_large",
        ),
        "nul_user_id": (codec.encode(raw_event(f"{rid}-r-nul", "u\x00ser")), "invalid_event"),
        "empty_user_id": (codec.encode(raw_event(f"{rid}-r-empty", "")), "invalid_event"),
        "huge_user_id": (codec.encode(raw_event(f"{rid}-r-huge", "u" * 100_000)), "invalid_event"),
    }
    deep = raw_event(f"{rid}-r-deep", full.user_id, '{"a":' * 20_000 + "1" + "}" * 20_000)
    big = "x" * 10_240
    specials = [
        Planned(0, f"{rid}-s-missing", "payment_receipt", full.user_id, {"currency": "EUR"}),
        Planned(
            1,
            f"{rid}-s-bademail",
            "marketing.weekly",
            bad_email.user_id,
            {"headline": "h", "body": "b", "cta_url": "https://example.com"},
        ),
        Planned(
            2,
            f"{rid}-s-bigpush",
            "security_alert",
            full.user_id,
            {"device": big, "ip": "203.0.113.9", "location": "Porto"},
        ),
        Planned(
            3,
            f"{rid}-s-locale",
            "payment_receipt",
            full.user_id,
            {"amount": "9.00", "currency": "EUR", "merchant": "Shop"},
            locale="xx-YY",
        ),
        Planned(4, f"{rid}-s-ssrf", "system.invoice.paid", ssrf_org.user_id, {"invoice": "inv_1"}),
        Planned(
            5,
            f"{rid}-s-longpush",
            "security_alert",
            full.user_id,
            {"device": "y" * 3000, "ip": "203.0.113.9", "location": "Porto"},
        ),
    ]
    reply = {"author": "Ana", "post_title": "Kafka", "excerpt": "Nice post"}
    specials += [
        Planned(6, f"{rid}-s-nul", "comment_reply", full.user_id, {**reply, "author": "A\x00na"}),
        Planned(7, f"{rid}-s-surrogate", "comment_reply", full.user_id, {**reply, "excerpt": "bad \ud800"}),
        Planned(
            8,
            f"{rid}-s-cta",
            "marketing.weekly",
            cta.user_id,
            {"headline": "h", "body": "b", "cta_url": "javascript:alert(1)"},
        ),
        Planned(9, f"{rid}-s-octal", "system.invoice.paid", octal_org.user_id, {"invoice": "inv_2"}),
    ]
    missing, bademail, bigpush, locale, ssrf, longpush, nul, surrogate, cta_event, octal = specials
    no_country = ChannelMessage(
        notification_id=keys.notification_id(f"{rid}-s-999", full.user_id),
        event_id=f"{rid}-s-999",
        event_type="security_alert",
        user_id=full.user_id,
        channel=Channel.SMS,
        lane=Lane.PRIORITY,
        tier=Tier.CRITICAL,
        category="security",
        recipient="+999999999999",
        template="security_alert",
        locale="en",
        idempotency_key=keys.idempotency_key(f"{rid}-s-999", Channel.SMS, "+999999999999"),
        occurred_at=template.occurred_at,
        payload=json.dumps({"device": "d", "ip": "i", "location": "l"}),
    )
    bad_phone_msg = ChannelMessage(
        notification_id=keys.notification_id(f"{rid}-s-phone", full.user_id),
        event_id=f"{rid}-s-phone",
        event_type="security_alert",
        user_id=full.user_id,
        channel=Channel.SMS,
        lane=Lane.PRIORITY,
        tier=Tier.CRITICAL,
        category="security",
        recipient="12345",
        template="security_alert",
        locale="en",
        idempotency_key=keys.idempotency_key(f"{rid}-s-phone", Channel.SMS, "12345"),
        occurred_at=build_event("x", user_id="x").occurred_at,
        payload=json.dumps({"device": "d", "ip": "i", "location": "l"}),
    )
    extra = [
        _expect(missing, Channel.PUSH, full.user_id, "failed_permanent", "template_error"),
        _expect(bademail, Channel.EMAIL, "not-an-email", "failed_permanent", "invalid_address"),
        _expect(longpush, Channel.PUSH, full.user_id, "deliver"),
        _expect(bigpush, Channel.SMS, full.phone or "", "failed_permanent", "payload_too_large"),
        _expect(bigpush, Channel.EMAIL, full.email or "", "deliver"),
        _expect(locale, Channel.PUSH, full.user_id, "deliver"),
        _expect(ssrf, Channel.WEBHOOK, f"{rid}-ep-ssrf", "failed_permanent", "blocked_destination"),
        Expect(
            bad_phone_msg.event_id,
            "security_alert",
            full.user_id,
            Channel.SMS,
            "12345",
            bad_phone_msg.idempotency_key,
            "failed_permanent",
            frozenset({"invalid_address"}),
        ),
        _expect(bigpush, Channel.PUSH, full.user_id, "failed_permanent", "payload_too_large"),
        _expect(longpush, Channel.SMS, full.phone or "", "failed_permanent", "payload_too_large"),
        _expect(longpush, Channel.EMAIL, full.email or "", "deliver"),
        _expect(nul, Channel.IN_APP, full.user_id, "failed_permanent", "invalid_content"),
        _expect(surrogate, Channel.IN_APP, full.user_id, "failed_permanent", "invalid_content"),
        _expect(cta_event, Channel.EMAIL, cta.email or "", "failed_permanent", "invalid_url"),
        _expect(octal, Channel.WEBHOOK, f"{rid}-ep-octal", "failed_permanent", "invalid_url"),
        Expect(
            deep.event_id,
            "comment_reply",
            full.user_id,
            Channel.IN_APP,
            full.user_id,
            keys.idempotency_key(deep.event_id, Channel.IN_APP, full.user_id),
            "failed_permanent",
            frozenset({"invalid_content"}),
        ),
        Expect(
            no_country.event_id,
            "security_alert",
            full.user_id,
            Channel.SMS,
            "+999999999999",
            no_country.idempotency_key,
            "failed_permanent",
            frozenset({"invalid_address"}),
        ),
    ]

    async def inject() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.stack.kafka, acks="all", max_request_size=2 * 1024 * 1024
        )
        await producer.start()
        try:
            for value, _ in raw_bad.values():
                await producer.send_and_wait(pipeline.topics.events, value, key=full.user_id.encode())
            await producer.send_and_wait(
                pipeline.topics.events, codec.encode(deep), key=full.user_id.encode()
            )
            for sms in (bad_phone_msg, no_country):
                await producer.send_and_wait(
                    pipeline.topics.channel(Channel.SMS, Lane.PRIORITY),
                    codec.encode(sms),
                    key=full.user_id.encode(),
                )
        finally:
            await producer.stop()
        await run.stream(1.0, events=specials)
        run.say("bad input injected")

    started = time.monotonic()
    await run.stream(10.0, {len(run.events) // 2: inject})
    acc = await run.drain(ledger, timeout_s=90, extra=extra)

    dlq = {bytes(v): reason for v, reason in ledger.dlq_reasons()}
    dlq_verdicts = {label: dlq.get(value) for label, (value, _) in raw_bad.items()}
    pushes = {m["message"]["data"]["idempotency_key"]: m["message"] for m in pipeline.fcm.messages()}
    long_push = pushes.get(extra[2].key, {})
    locale_push = pushes.get(extra[5].key, {})
    facts = {
        "good events": len(run.events),
        "DLQ reasons": dlq_verdicts,
        "3 KB push: sent body bytes": len(long_push.get("notification", {}).get("body", "").encode()),
        "unknown locale: push title": locale_push.get("notification", {}).get("title"),
        "matrix verdicts": "".join(
            f"\n  {x.event_id.split('-s-')[-1]:<8} {x.channel.value:<8} wants {x.want} {sorted(x.reasons)}: "
            f"{[(o.status.value, o.reason) for o in ledger.outcomes.get(x.key, [])]}"
            for x in extra
        ),
        "wall time (s)": f"{time.monotonic() - started:.0f}",
    }
    with capsys.disabled():
        print("\n" + summary("bad-input matrix", acc, facts))
        print("\n".join(run.log))
    assert acc.complete, summary("bad-input matrix", acc, facts)
    assert dlq_verdicts == {label: reason for label, (_, reason) in raw_bad.items()}, dlq_verdicts
    body = long_push["notification"]["body"]
    # the user's locale (pt) rendered it; truncated to fit, marked with an ellipsis, still sent
    assert body.startswith("Novo acesso em yyy") and body.endswith("…") and len(body.encode()) < 3000
    ssrf_out = [o for o in ledger.outcomes.get(extra[6].key, []) if o.status.value == "failed_permanent"]
    assert ssrf_out[0].error_code == "metadata", ssrf_out
    # xx-YY is unknown: the default locale (en) wins over the user's own (pt)
    assert locale_push["notification"]["title"] == "Payment received"
    # the stream went on: good events after the bad ones were delivered (acc.complete covers them all)
    after = run.events[len(run.events) // 2 :]
    assert any(
        ledger.provider[x.channel.value][x.key]
        for e in after
        for x in run.expects()
        if x.event_id == e.event_id and x.want == "deliver"
    )
    assert not [o for o in ledger.outcomes.get(extra[6].key, []) if o.status.value == "sent"]
    assert not [d for d in pipeline.receiver.deliveries if "ssrf" in d.path or "octal" in d.path]
    # every hostile case above has a named reason: none was retried as an internal_error
    internal = [
        (o.channel, o.event_id, o.detail)
        for outs in ledger.outcomes.values()
        for o in outs
        if o.reason == "internal_error" and o.user_id in run.user_ids
    ]
    assert not internal, internal
