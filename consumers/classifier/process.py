"""``herald run classifier``: herald.events → herald.channel.<channel>.<lane> + herald.outcomes."""

from __future__ import annotations

from consumers.classifier.handler import Classifier, decide_config
from consumers.classifier.invalidation import ProfileInvalidator
from consumers.classifier.lookup import ProfileCache
from consumers.classifier.ratelimit import RateLimiter
from consumers.classifier.routing import RoutingError, load_routing
from consumers.infra.resources import Resources
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from consumers.scheduler.store import Scheduler
from schemas.errors import ConfigurationError

__all__ = ["build", "build_classifier"]


async def build_classifier(res: Resources, *, broadcast: bool = False) -> Classifier:
    """The handler over this process's resources (the routing table is validated here, at start)."""
    settings = res.settings
    try:
        table = load_routing(settings.classifier.routing_file, settings.classifier.default_tier)
    except RoutingError as exc:
        raise ConfigurationError(str(exc)) from exc
    pool = await res.pool()
    return Classifier(
        table=table,
        profiles=ProfileCache(
            pool, ttl_s=settings.classifier.lookup_cache_ttl_s, max_size=settings.classifier.lookup_cache_size
        ),
        limiter=RateLimiter(
            res.redis(),
            timeout_s=settings.classifier.limiter_timeout_s,
            cooldown_s=settings.classifier.limiter_cooldown_s,
        ),
        scheduler=Scheduler(pool, res.clock),
        config=decide_config(settings),
        clock=res.clock,
        broadcast=broadcast,
    )


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    # --lane bulk: the topic fan-out's copies (herald.events.fanout), in a group of their own.
    broadcast = options.lane == "bulk"
    handler = await build_classifier(res, broadcast=broadcast)
    invalidator = ProfileInvalidator(res.settings.database_url.get_secret_value(), handler.profiles)
    topics = res.topics
    await res.create_topics(
        [
            topics.events,
            dlq(topics.events),
            topics.fanout,
            dlq(topics.fanout),
            topics.outcomes,
            *topics.channel_topics(),
        ]
    )
    runner = Runner(
        handler,
        topics=[topics.fanout if broadcast else topics.events],
        group_id=options.group or ("herald-classifier-bulk" if broadcast else "herald-classifier"),
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner], loops=[invalidator.run])
