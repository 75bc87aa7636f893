"""Emails/s through the email channel consumer with the SMTP adapter against a real SMTP server
(aiosmtpd), and with an instant no-op provider, in one run.

Both runs use the same stack, the same preloaded ChannelMessages (rendered by Jinja2, a third in
pt-BR), the real runtime (Kafka in, outcomes out, commit after acks) and the channel consumer's
replay guard; only the adapter differs. The SMTP server runs in its own process (as a relay
would), without TLS or AUTH: the figure is the adapter's and its connection pool's, not a TLS
handshake's; a pooled connection pays STARTTLS once, not per message. The SMTP run must see every
message arrive at the server, or the phase fails.
"""

from __future__ import annotations

import asyncio
import sys

from bench.channels import channel_messages, run_consumer
from bench.common import Timing, preload
from bench.run import Bench, Row, console
from channels.email.smtp import SmtpEmailAdapter, SmtpSettings
from channels.pacing import TokenBucket
from consumers.infra.resources import Resources
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import dlq
from schemas.models import Channel, Lane

__all__ = ["phase"]

# The SMTP server's process: prints its port, then, when stdin closes, how many messages it got.
_SINK = """
import sys
from consumers.devstack.smtp_sink import SmtpSink
with SmtpSink(security="none") as sink:
    print(sink.port, flush=True)
    sys.stdin.read()
    print(len(sink.messages()), flush=True)
"""


async def _timed(b: Bench, n: int, adapter: SmtpEmailAdapter | None) -> Timing:
    s = b.settings()
    res = Resources(s)
    try:
        source = res.topics.channel(Channel.EMAIL, Lane.PRIORITY)
        await create_topics(s, [source, dlq(source), res.topics.outcomes])
        await preload(s, source, channel_messages(Channel.EMAIL, n), 4)
        return await run_consumer(
            res, Channel.EMAIL, source, n, f"{s.topic_prefix}-smtp", timeout=b.timeout(n), adapter=adapter
        )
    finally:
        await res.close()


async def phase(b: Bench) -> None:
    n = min(b.events, 5_000)
    with console.status(f"email consumer, no-op provider ({n:,} messages)"):
        noop = await _timed(b, n, None)
    sink = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SINK, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert sink.stdout is not None
        port = int(await sink.stdout.readline())
        settings = SmtpSettings(host="127.0.0.1", port=port, security="none", max_send_rate=1e6)
        adapter = SmtpEmailAdapter(
            settings, from_address=b.settings().email.from_address, bucket=TokenBucket(1e6)
        )
        try:
            with console.status(f"email consumer, SMTP to aiosmtpd ({n:,} messages)"):
                smtp = await _timed(b, n, adapter)
        finally:
            await adapter.close()
        received, _ = await asyncio.wait_for(sink.communicate(b""), 30)  # EOF: the server reports
    finally:
        if sink.returncode is None:
            sink.kill()
            await sink.wait()
    got = int(received.decode().strip().splitlines()[-1])
    if got < n:
        raise RuntimeError(f"the SMTP server received {got} of {n} messages")
    b.extra["smtp"] = {"messages": n, "received": got, "pool_size": settings.pool_size}
    b.add_timing(
        Row("email consumer, no-op provider (SMTP phase)", noop.rate, "msg/s"), noop, "email consumer"
    )
    b.add_timing(
        Row(
            "email consumer, SMTP adapter → aiosmtpd",
            smtp.rate,
            "msg/s",
            "no-op",
            smtp.rate / noop.rate,
            note=f"pool of {settings.pool_size} connections, no TLS; server in its own process",
        ),
        smtp,
        "email consumer",
    )
