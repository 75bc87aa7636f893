"""Several providers for one channel, in order, each behind its circuit breaker.

:class:`FailoverAdapter` is itself a :class:`~channels.base.ChannelAdapter`: the channel consumer
calls it as it calls any single provider, and reads which provider acted from
``Outcome.provider``. Per message it walks the chain for the message's tier and lane
(:func:`provider_chain`):

* a provider whose breaker is open is skipped at once (counted in
  ``herald_provider_failovers_total{reason="circuit_open"}``);
* a provider that *refused* retryably (throttling, 5xx, refused credentials) passes the message
  to the next one at once (``reason="retryable"``): it did not take the message, so a second
  provider cannot duplicate it;
* a provider that *timed out* (``provider_timeout``: it may have accepted) ends the walk with
  that retryable outcome; the channel consumer then applies the crash rule to it
  (:func:`~consumers.channel.ledger.resends_unknown`): ``failed_permanent``/``ambiguous`` on the
  tiers and channels where a duplicate hurts more than a loss, else a resend;
* ``tenant_sender_config`` (a tenant's own sender this provider refused: SES identity not
  verified, an SMTP relay refusing the tenant's domain or sender) is retryable and passes on
  like a refusal (``reason="tenant_sender"``), but the breaker ignores it, neither failure nor
  success (:func:`breaker_result`): one tenant's setup must not open the breaker for every
  tenant, nor reset its count;
* a success or a permanent failure ends the walk (a bad address is bad at every provider).

When every provider is open (or refused), the message fails retryably with reason
``circuit_open`` (or the last refusal) and takes the retry path it takes with one provider:
nothing is lost. When the last refusal is ``tenant_sender_config`` and a provider was skipped
for its open breaker, the answer is ``circuit_open`` with that breaker's wait: the skipped
provider may well take the tenant's sender once it is back. Retried rather than permanent,
a refusal that was in fact our relay's own outage never loses a tenant's mail; a tenant's
sender that no provider takes ends ``exhausted`` after the retry schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from channels.base import ChannelAdapter, Content, DeliveryError, Outcome, RetryableDelivery
from consumers.channel.breaker import Result
from consumers.channel.breakers import Breakers
from consumers.infra.provider_settings import ProvidersSettings
from consumers.runtime import metrics
from schemas.models import Channel, ChannelMessage, Lane, Tier

__all__ = ["FailoverAdapter", "breaker_result", "chain_providers", "fails_over", "provider_chain"]

log = logging.getLogger(__name__)


def provider_chain(providers: ProvidersSettings, channel: Channel, tier: Tier, lane: Lane) -> tuple[str, ...]:
    """The providers of ``channel`` in failover order for a message of ``tier`` on ``lane``. Pure.

    A per-tier route wins over a per-lane one, which wins over the channel's default list.
    """
    for override in (providers.by_tier.get(tier, {}), providers.by_lane.get(lane, {})):
        if override.get(channel):
            return tuple(override[channel])
    default: list[str] = getattr(providers, channel.value, [])
    return tuple(default)


def chain_providers(providers: ProvidersSettings, channel: Channel, lane: Lane) -> tuple[str, ...]:
    """Every provider a ``channel``/``lane`` process may use (any tier), first-seen order. Pure."""
    names = [*provider_chain(providers, channel, Tier.LOW, lane)]
    for tier in Tier:
        names.extend(provider_chain(providers, channel, tier, lane))
    return tuple(dict.fromkeys(names))


# A tenant's own sender refused by this provider: one tenant's setup, not the provider's health.
_TENANT_SENDER = "tenant_sender_config"


def breaker_result(outcome: Outcome) -> Result:
    """How a provider's answer counts for its breaker: only retryable failures count against it,
    and a tenant's sender refused counts not at all. Pure."""
    if outcome.reason == _TENANT_SENDER:
        return Result.IGNORED
    if outcome.status == "failed_retryable":
        return Result.RETRYABLE
    return Result.SUCCESS if outcome.ok else Result.PERMANENT


def fails_over(outcome: Outcome) -> bool:
    """Whether the next provider should take the message at once: a retryable refusal (a tenant's
    sender refused included), not a timeout after which the provider may have accepted it. Pure."""
    return outcome.status == "failed_retryable" and not outcome.ambiguous


class FailoverAdapter:
    """A channel's providers in order, behind shared breakers."""

    def __init__(
        self,
        channel: Channel,
        adapters: Mapping[str, ChannelAdapter],
        *,
        providers: ProvidersSettings,
        breakers: Breakers,
    ) -> None:
        self.channel = channel
        self.adapters = dict(adapters)
        self.providers = providers
        self.breakers = breakers
        self.provider = "+".join(self.adapters)  # the chain, as a bounded metric label

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        chain = [p for p in provider_chain(self.providers, self.channel, message.tier, message.lane)]
        refused: Outcome | None = None
        skipped: list[str] = []
        for name in chain:
            if not await self.breakers.admit(name):
                skipped.append(name)
                metrics.PROVIDER_FAILOVERS.labels(self.channel.value, name, "circuit_open").inc()
                continue
            outcome = await self._call(name, message, content, idempotency_key)
            await self.breakers.record(name, breaker_result(outcome))
            if not fails_over(outcome):
                return outcome
            refused = outcome
            why = "tenant_sender" if outcome.reason == _TENANT_SENDER else "retryable"
            metrics.PROVIDER_FAILOVERS.labels(self.channel.value, name, why).inc()
            log.info(
                "%s: %s refused %s (%s); next provider",
                self.channel.value,
                name,
                idempotency_key,
                outcome.reason,
            )
        if refused is not None and not (refused.reason == _TENANT_SENDER and skipped):
            return refused
        return await self._all_open(chain, skipped, refused)

    async def _call(self, name: str, message: ChannelMessage, content: Content, key: str) -> Outcome:
        try:
            return await self.adapters[name].deliver(message, content, idempotency_key=key)
        except DeliveryError as exc:  # adapters may raise their classified errors
            return Outcome.from_error(exc)

    async def _all_open(
        self, chain: Sequence[str], skipped: Sequence[str], refused: Outcome | None
    ) -> Outcome:
        wait = min([await self.breakers.retry_in(name) for name in skipped], default=0.0)
        opened = f"breaker open: {', '.join(skipped) or 'none configured'}"
        return Outcome.from_error(
            RetryableDelivery(
                chain[0] if chain else self.provider,
                "circuit_open",
                f"{refused.provider} refused the tenant's sender; {opened}" if refused else opened,
                reason="circuit_open",
                retry_after=wait or None,
            )
        )

    async def close(self) -> None:
        for adapter in self.adapters.values():
            await adapter.close()
