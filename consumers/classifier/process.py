"""``herald run classifier``: herald.events → herald.channel.<channel>.<lane> + herald.outcomes."""

from __future__ import annotations

from pathlib import Path

from consumers.classifier.handler import Classifier, decide_config
from consumers.classifier.invalidation import ProfileInvalidator
from consumers.classifier.lookup import ProfileCache
from consumers.classifier.ratelimit import RateLimiter
from consumers.classifier.reload import RoutingReloader
from consumers.classifier.routing import RoutingError, RoutingTable, load_routing
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.runtime.gc_tuning import tune_gc
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from consumers.scheduler.store import Scheduler
from consumers.workflow.cancel import Canceller
from consumers.workflow.intake import Intake
from consumers.workflow.presets import PresetTimings
from schemas.codec import default_codec
from schemas.errors import ConfigurationError
from schemas.models import Tier

__all__ = ["build", "build_classifier", "load_table", "preset_timings"]


def preset_timings(settings: HeraldSettings) -> PresetTimings:
    """The tier presets' delays, from the fallback settings that implement them."""
    f = settings.fallback
    return PresetTimings(
        high_escalation_delay_s=f.high_escalation_delay_s,
        digest_after_s=f.digest_after_s,
        digest_window_s=f.digest_window_s,
        digest_collect_s=f.digest_collect_s,
        digest_max_items=f.digest_max_items,
    )


def load_table(settings: HeraldSettings, path: Path | None = None) -> RoutingTable:
    """The routing table from ``path`` (default: the configured routing file); RoutingError if invalid."""
    c = settings.classifier
    return load_routing(path or c.routing_file, c.default_tier, preset_timings(settings))


async def build_classifier(res: Resources, *, broadcast: bool = False) -> Classifier:
    """The handler over this process's resources (the routing table is validated here, at start)."""
    settings = res.settings
    try:
        table = load_table(settings)
    except RoutingError as exc:
        raise ConfigurationError(str(exc)) from exc
    pool = await res.pool()
    codec = default_codec()

    def tier_of(event_type: str) -> Tier:  # the table in use, after any reload
        route = classifier.table.match(event_type)
        return route.tier if route is not None else Tier.MEDIUM

    canceller = Canceller(
        pool,
        res.redis(),
        codec,
        tier_of,
        namespace=settings.topic_prefix,
        prefix=f"{settings.topic_prefix}:cancel",
        ttl_s=settings.classifier.cancel_ttl_s,
    )
    classifier = Classifier(
        table=table,
        profiles=ProfileCache(
            pool, ttl_s=settings.classifier.lookup_cache_ttl_s, max_size=settings.classifier.lookup_cache_size
        ),
        limiter=RateLimiter(
            res.redis(),
            timeout_s=settings.classifier.limiter_timeout_s,
            cooldown_s=settings.classifier.limiter_cooldown_s,
        ),
        scheduler=Scheduler(pool, res.clock, namespace=settings.topic_prefix),
        config=decide_config(settings, codec),
        clock=res.clock,
        intake=Intake(canceller, res.topics, codec),
        broadcast=broadcast,
    )
    return classifier


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
    reloader = RoutingReloader(lambda: load_table(res.settings), handler.use_table)
    tune_gc()
    return ProcessSpec(runners=[runner], loops=[reloader.run, invalidator.run])
