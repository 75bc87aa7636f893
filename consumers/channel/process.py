"""``herald run channel --channel email --lane priority``: the consumer of one channel and lane process."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.email.ses import SesEmailAdapter
from channels.templates import TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.failover import FailoverAdapter
from consumers.channel.ledger import DeliveryLedger
from consumers.channel.quota import SharedQuota
from consumers.channel.registry import build_adapter
from consumers.infra.recipient_properties import RecipientProperties
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.infra.suppressions import SuppressionStore
from consumers.runtime.gc_tuning import tune_gc
from consumers.runtime.process import BackgroundLoop, ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from consumers.scheduler.retries import longest_run
from schemas.errors import ConfigurationError
from schemas.models import Channel, Lane

__all__ = ["build", "build_consumer", "group_id"]


def group_id(channel: Channel, lane: Lane) -> str:
    return f"herald-channel-{channel.value}-{lane.value}"


def _parse(options: ProcessOptions) -> tuple[Channel, Lane]:
    try:
        channel = Channel(options.channel or "")
    except ValueError:
        raise ConfigurationError(f"--channel must be one of: {', '.join(c.value for c in Channel)}") from None
    try:
        lane = Lane(options.lane or "priority")
    except ValueError:
        raise ConfigurationError(f"--lane must be one of: {', '.join(lane.value for lane in Lane)}") from None
    return channel, lane


def _share_ses_quota(res: Resources, adapter: ChannelAdapter, lane: Lane) -> None:
    """SES's rate is the account's: every email process paces from one shared bucket (alone or
    behind failover), with the lane's share of it."""
    leaves = adapter.adapters.values() if isinstance(adapter, FailoverAdapter) else [adapter]
    email = res.settings.email
    for leaf in leaves:
        if isinstance(leaf, SesEmailAdapter):
            leaf.bucket = SharedQuota(
                res.redis(),
                rate=leaf.bucket.rate,
                lane=lane,
                priority_share=email.priority_share,
                expected_replicas=email.expected_replicas,
                key=f"{res.settings.topic_prefix}:ses:quota",
            )


def _check_ledger_ttl(settings: HeraldSettings) -> None:
    """A retry re-sends with the same key: a ledger that forgot it could send an accepted email
    again. A key's retries last up to the later of the schedule's time at its longest jitter and
    the fallback's unattempted_max_age_s, then a wait and a real try per step
    (consumers/scheduler/retries.py longest_run), not the sum of its steps."""
    jitter = settings.fallback.retry_jitter
    max_age_s = settings.fallback.unattempted_max_age_s
    longest = max(
        (
            longest_run(steps, jitter, max_age_s).total_seconds()
            for steps in settings.fallback.retry_schedules_s.values()
        ),
        default=0.0,
    )
    if settings.channel.ledger_ttl_s < longest:
        raise ConfigurationError(
            f"HERALD_CHANNEL__LEDGER_TTL_S={settings.channel.ledger_ttl_s} is shorter than the longest "
            f"retry run ({longest:.0f} s: HERALD_FALLBACK__UNATTEMPTED_MAX_AGE_S or the schedule's steps at "
            "+jitter, then a wait and a try per step at their longest): "
            "set it to at least that"
        )


async def build_consumer(res: Resources, channel: Channel, lane: Lane) -> ChannelConsumer:
    """The handler with its adapter, renderer and delivery ledger, built from settings."""
    settings = res.settings
    _check_ledger_ttl(settings)
    adapter = await build_adapter(channel, res, lane)
    _share_ses_quota(res, adapter, lane)
    consumer = ChannelConsumer(
        channel=channel,
        lane=lane,
        adapter=adapter,
        topics=res.topics,
        settings=settings.channel,
        renderer=TemplateRenderer(
            settings.templates_dir, settings.default_locale, url_schemes=settings.template_url_schemes
        ),
        clock=res.clock,
        # Hard bounces, complaints, STOP replies (provider feedback); not in dry-run demos.
        suppressions=SuppressionStore(await res.pool())
        if channel in (Channel.EMAIL, Channel.SMS) and not settings.channel.dry_run
        else None,
        # Custom properties for templates that read `recipient` (the webhook renders its own body).
        properties=RecipientProperties(await res.pool()) if channel is not Channel.WEBHOOK else None,
    )
    consumer.ledger = DeliveryLedger(
        res.redis(),
        ttl_s=settings.channel.ledger_ttl_s,
        namespace=f"{settings.topic_prefix}:delivery",
        consumer=consumer.name,
        owner_ttl_s=settings.channel.ledger_owner_ttl_s,
    )
    consumer.cancel_check = CancelCheck(
        res.redis(), consumer=consumer.name, prefix=f"{settings.topic_prefix}:cancel"
    )
    return consumer


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    channel, lane = _parse(options)
    source = res.topics.channel(channel, lane)
    await res.create_topics([source, dlq(source), res.topics.outcomes, dlq(res.topics.outcomes)])
    consumer = await build_consumer(res, channel, lane)
    runner: Runner[object] = Runner(
        consumer,  # type: ignore[arg-type]
        topics=[source],
        group_id=options.group or group_id(channel, lane),
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    loops: list[BackgroundLoop] = [consumer.ledger.heartbeat] if consumer.ledger is not None else []
    tune_gc()  # a batch of 500 messages' objects, freed by reference counting between collections
    return ProcessSpec(runners=[runner], loops=loops, on_stop=consumer.adapter.close)
