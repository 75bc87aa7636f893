"""What the console's routes share: settings, the pool, the stores, the lag sampler, templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as redis_asyncio
from jinja2 import Environment, FileSystemLoader, select_autoescape

from channels.webhook.endpoints_pg import EndpointStore
from consumers.api.admin.lookup_guard import LookupGuard
from consumers.console.auth import LoginLinks, OperatorVerifier, SessionStore, Verifiers
from consumers.console.live import LagSampler
from consumers.console.timeline import relative
from consumers.infra.clock import Clock, SystemClock
from consumers.infra.settings import HeraldSettings
from consumers.ledger.queries import ActivityReader
from consumers.runtime.topics import Topics

__all__ = ["ConsoleContext", "templates"]

_HERE = Path(__file__).parent


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["relative"] = relative
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S") if d is not None else "-"
    env.filters["pct"] = lambda x: f"{x * 100:.1f}%" if x is not None else "-"
    return env


@dataclass
class ConsoleContext:
    settings: HeraldSettings
    pool: asyncpg.Pool
    key_verifier: OperatorVerifier | None = None
    redis: redis_asyncio.Redis | None = None  # the providers' circuit breakers live there
    clock: Clock = field(default_factory=SystemClock)
    guard: LookupGuard | None = None  # failed logins count with the admin API's failed key lookups

    def __post_init__(self) -> None:
        self.reader = ActivityReader(self.pool)
        self.sessions = SessionStore(self.pool, self.settings.console.session_ttl_s)
        self.links = LoginLinks(self.pool)
        self.verifiers = Verifiers(self.links, self.key_verifier)
        self.endpoints = EndpointStore(self.pool)
        self.lag = LagSampler(
            self.settings.kafka_bootstrap_servers,
            self.settings.topic_prefix,
            self.clock,
            window_s=self.settings.console.live_window_s,
        )
        self.dlq_topics = frozenset(t for t in Topics(self.settings.topic_prefix).all() if t.endswith(".dlq"))
        self.env = templates()
        self.static_dir = _HERE / "static"
