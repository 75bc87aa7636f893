"""The whole pipeline as real OS processes on a private dev stack, with fake providers that record.

    async with Pipeline.up(root) as p:     # stack, fakes, migrations, topics, 8 `herald run` children
        await p.seed(users)
        p.kill(name); p.restart(name)       # SIGKILL and start again (same argv, same env)
        p.stack.stop_service("redis")       # outage drills on this pipeline's own servers

Providers: SES and SNS on moto (email goes through a :class:`FaultProxy` so SES can throttle),
FCM on :class:`FcmFake`, webhooks on :class:`WebhookReceiver`, in-app in PostgreSQL. Every one
of them records what it accepted: that is what the ledger counts, not Herald's own outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aioboto3
import asyncpg
import httpx
import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from channels.webhook.signing import generate_secret
from consumers.devstack import DevStack
from consumers.devstack.fcm_fake import FcmFake
from consumers.devstack.processes import free_port, spawn_herald
from consumers.devstack.stack import KafkaStorage
from consumers.infra.db import connect_pool, migrate
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from tests.chaos.population import User
from tests.fakes.fault_proxy import FaultProxy
from tests.fakes.webhook_receiver import Behaviour, WebhookReceiver

__all__ = ["CHAOS_ENV", "PROCESSES", "Pipeline"]

# name -> argv after `herald run` (what `make run` starts, minus the API and the janitor)
PROCESSES: dict[str, list[str]] = {
    "classifier": ["classifier"],
    "email-priority": ["channel", "--channel", "email", "--lane", "priority"],
    "email-bulk": ["channel", "--channel", "email", "--lane", "bulk"],
    "sms": ["channel", "--channel", "sms", "--lane", "priority"],
    "push": ["channel", "--channel", "push", "--lane", "priority"],
    "in-app": ["channel", "--channel", "in_app", "--lane", "priority"],
    "webhook": ["channel", "--channel", "webhook", "--lane", "priority"],
    "fallback": ["fallback"],
}

# Short delays and retry schedules so escalations, digests and retries happen within a run.
CHAOS_ENV: dict[str, str] = {
    "HERALD_PARTITIONS": "4",
    "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
    "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
    "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100",
    "HERALD_RUNTIME__SHUTDOWN_GRACE_S": "5",
    "HERALD_RUNTIME__HANDLER_RETRY_MAX_S": "2",
    # Redis is consulted for the low tier only (a limit nobody reaches), so a Redis outage
    # shows the documented degradation: low re-queued, the rest flows.
    "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR": json.dumps(
        {"high": 0, "medium": 0, "low": 1_000_000, "system": 0}
    ),
    "HERALD_CLASSIFIER__LIMITER_RETRY_S": "5",
    "HERALD_CLASSIFIER__LIMITER_COOLDOWN_S": "2",
    "HERALD_FALLBACK__HIGH_ESCALATION_DELAY_S": "30",
    "HERALD_FALLBACK__DIGEST_AFTER_S": "30",
    "HERALD_FALLBACK__DIGEST_WINDOW_S": "120",
    "HERALD_FALLBACK__DIGEST_COLLECT_S": "5",
    "HERALD_FALLBACK__CRITICAL_CHECK_AFTER_S": "60",
    "HERALD_FALLBACK__RETRY_SCHEDULES_S": json.dumps(
        {
            "webhook": [1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8],
            "push": [1, 2, 4, 8, 8, 8, 8, 8],
            "email": [1, 2, 4, 8, 8, 8, 8, 8],
            "sms": [1, 2, 4, 8, 8],
            "in_app": [1, 2, 4, 8, 8, 8],
        }
    ),
    "HERALD_FALLBACK__RETRY_JITTER": "0.2",
    "HERALD_CHANNEL__BATCH_DEADLINE_S": "30",
    "HERALD_WEBHOOK__ALLOW_HOSTS": '["127.0.0.1/32"]',
    "HERALD_WEBHOOK__ENDPOINT_CACHE_TTL_S": "1",
    "HERALD_EMAIL__FROM_ADDRESS": "Herald <noreply@herald.dev>",
    "HERALD_EMAIL__MAX_SEND_RATE": "1000",
    "HERALD_SMS__MAX_SEND_RATE": "1000",
}


@dataclass
class Pipeline:
    stack: DevStack
    fcm: FcmFake
    proxy: FaultProxy
    receiver: WebhookReceiver
    root: Path
    prefix: str = "chaos"
    secret: str = field(default_factory=generate_secret)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    kills: list[tuple[float, str]] = field(default_factory=list)
    # channel -> provider calls in flight when its process was SIGKILLed (delivery-ledger claims the
    # dead process left behind: claimed, neither done nor released)
    in_flight_at_kills: Counter[str] = field(default_factory=Counter)
    _in_flight_seen: set[str] = field(default_factory=set)
    in_flight_unknown: set[str] = field(default_factory=set)  # channels killed while Redis was unreadable
    # killed on purpose and about to be started again by whoever killed it: not a crash, and not
    # the supervisor's to restart (else two copies run, one of them untracked)
    held: set[str] = field(default_factory=set)
    started_at: dict[str, float] = field(default_factory=dict)  # name -> time.monotonic() of its last start
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    pool: asyncpg.Pool | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # over CHAOS_ENV, for every process
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> env, over the rest

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    @contextlib.asynccontextmanager
    async def up(
        cls,
        root: Path,
        kafka_storage: KafkaStorage = "memory",
        extra_env: dict[str, str] | None = None,
        kafka_retention_s: float | None = None,
    ) -> AsyncIterator[Pipeline]:
        root.mkdir(parents=True, exist_ok=True)
        # Its own servers, whatever the session's stack exported: the drills stop and restart them.
        stack = DevStack(kafka_storage=kafka_storage, kafka_retention_s=kafka_retention_s, honour_env=False)
        with stack, FcmFake() as fcm:
            assert stack.moto_url is not None
            with FaultProxy(stack.moto_url) as proxy:
                receiver = WebhookReceiver()
                await receiver.start()
                p = cls(stack, fcm, proxy, receiver, root, extra_env=dict(extra_env or {}))
                try:
                    await p._prepare()
                    for name in PROCESSES:
                        p.start(name)
                    await p.wait_ready()
                    yield p
                finally:
                    p.stop_all()
                    if p.pool is not None:
                        await p.pool.close()
                    await receiver.stop()

    @property
    def settings(self) -> HeraldSettings:
        return HeraldSettings(
            kafka_bootstrap_servers=self.stack.kafka,
            database_url=self.stack.database_url,
            redis_url=self.stack.redis_url,
            topic_prefix=self.prefix,
            partitions=int({**CHAOS_ENV, **self.extra_env}["HERALD_PARTITIONS"]),
        )

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def env(self, name: str) -> dict[str, str]:
        env = {
            **os.environ,
            **self.stack.env(),
            **CHAOS_ENV,
            **self.extra_env,
            **self.fcm.env(self.root / "fcm.json"),
            "HERALD_TOPIC_PREFIX": self.prefix,
            "HERALD_METRICS_HOST": "127.0.0.1",
        }
        if name.startswith("email"):
            env["HERALD_AWS__ENDPOINT_URL"] = self.proxy.url  # SES faults are injected here
        return {**env, **self.overrides.get(name, {})}

    async def _prepare(self) -> None:
        self.fcm.service_account(self.root / "fcm.json")
        self.pool = await connect_pool(self.stack.database_url, max_size=4)
        await migrate(self.pool)
        await create_topics(self.settings, self.topics.all())
        session = aioboto3.Session()
        async with session.client(
            "sesv2",
            region_name="us-east-1",
            endpoint_url=self.stack.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ) as ses:
            await ses.create_email_identity(EmailIdentity="herald.dev")
            await ses.create_email_identity(EmailIdentity="chaos.example.com")

    def start(self, name: str) -> subprocess.Popen[bytes]:
        port = free_port()
        env = {**self.env(name), "HERALD_METRICS_PORT": str(port)}
        self.procs[name] = spawn_herald(PROCESSES[name], env=env, log=self.root / f"{name}.log")
        self.ports[name] = port
        self.started_at[name] = time.monotonic()
        self.held.discard(name)
        return self.procs[name]

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed. The caller starts it again
        (:meth:`start`); until then the supervisor leaves it alone."""
        proc = self.procs[name]
        self.held.add(name)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.kills.append((time.monotonic(), name))

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    async def count_in_flight(self, name: str) -> int | None:
        """After ``name`` was killed: how many of its provider calls were in flight (0 for non-channel
        processes). A dead process's claims stay in the ledger until a replay resolves them. None
        (and the channel remembered in ``in_flight_unknown``) when Redis could not be read."""
        argv = PROCESSES[name]
        if argv[0] != "channel":
            return 0
        channel, lane = argv[argv.index("--channel") + 1], argv[argv.index("--lane") + 1]
        owner = f"in_flight|channel-{channel}-{lane}:"
        client = redis_asyncio.Redis.from_url(
            self.stack.redis_url, socket_timeout=5, socket_connect_timeout=2
        )
        found = 0
        try:
            keys = [k async for k in client.scan_iter(match=f"{self.prefix}:delivery:ledger:*", count=1000)]
            for i in range(0, len(keys), 1000):
                chunk = keys[i : i + 1000]
                for key, value in zip(chunk, await client.mget(chunk), strict=True):
                    text = value.decode() if isinstance(value, bytes) else str(value or "")
                    if text.startswith(owner) and (ident := f"{key!r}={text}") not in self._in_flight_seen:
                        self._in_flight_seen.add(ident)
                        found += 1
        except (RedisError, OSError):
            self.in_flight_unknown.add(channel)  # Redis is in its outage drill: nothing to count with
            return None
        finally:
            await client.aclose()
        self.in_flight_at_kills[channel] += found
        return found

    def dead(self) -> list[str]:
        """Processes that exited by themselves (not those killed on purpose and awaiting their restart)."""
        return [name for name, p in self.procs.items() if name not in self.held and p.poll() is not None]

    def ensure_running(self) -> None:
        for name in self.dead():
            self.start(name)

    async def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            for name in PROCESSES:
                while True:
                    proc = self.procs[name]
                    if proc.poll() is not None:
                        tail = (self.root / f"{name}.log").read_text(errors="replace")[-3000:]
                        raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (
                            await client.get(f"http://127.0.0.1:{self.ports[name]}/readyz")
                        ).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready after {timeout}s (see {self.root / name}.log)")
                    await asyncio.sleep(0.2)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    async def reconnect(self) -> asyncpg.Pool:
        """The driver's own pool after a PostgreSQL restart (its connections died with the server)."""
        if self.pool is not None:
            self.pool.terminate()
        self.pool = await connect_pool(self.stack.database_url, max_size=4)
        return self.pool

    # -- data ------------------------------------------------------------------------------------
    def webhook_path(self, endpoint_id: str) -> str:
        return f"/hooks/{endpoint_id}"

    async def seed(self, users: list[User]) -> None:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            for u in users:
                quiet = u.quiet or (None, None)
                await conn.execute(
                    "INSERT INTO herald_recipients (user_id, email, phone, timezone, locale, quiet_start, quiet_end) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    u.user_id,
                    u.email,
                    u.phone,
                    u.timezone,
                    u.locale,
                    quiet[0],
                    quiet[1],
                )
                for token in u.tokens:
                    await conn.execute(
                        "INSERT INTO herald_device_tokens (token, user_id) VALUES ($1, $2)", token, u.user_id
                    )
                for (category, channel), enabled in [
                    *((c, False) for c in u.opt_out),
                    *((c, True) for c in u.opt_in),
                ]:
                    await conn.execute(
                        "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, $2, $3, $4)",
                        u.user_id,
                        category,
                        channel,
                        enabled,
                    )
                for ep in u.endpoints:
                    await self.add_endpoint(conn, ep, u.user_id, self.receiver_url(ep))

    def receiver_url(self, endpoint_id: str) -> str:
        behaviour = self.behaviours.setdefault(endpoint_id, Behaviour())
        return self.receiver.endpoint(self.webhook_path(endpoint_id), [self.secret], behaviour)

    async def add_endpoint(self, conn: asyncpg.Connection, endpoint_id: str, owner: str, url: str) -> None:
        await conn.execute(
            "INSERT INTO herald_webhook_endpoints (endpoint_id, owner_id, url, secrets, event_types) "
            "VALUES ($1, $2, $3, $4, '{system.*}')",
            endpoint_id,
            owner,
            url,
            [self.secret],
        )
