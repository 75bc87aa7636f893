"""Every Prometheus metric Herald exports, defined once.

Naming follows Prometheus conventions: ``herald_`` prefix, ``_total`` counters,
``_seconds`` histograms, base units. Labels are bounded sets (topic, channel, lane, tier,
status, reason, provider): never user ids, event ids or URLs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schemas.codec import Codec

__all__ = [
    "AMBIGUOUS_DELIVERIES",
    "ASSIGNED_PARTITIONS",
    "BATCH_AGE",
    "CLASSIFIER_DECISIONS",
    "COMMITS_ABANDONED",
    "CONSUMED",
    "CONSUMER_LAG",
    "CRITICAL_UNDELIVERED",
    "DELIVERIES",
    "DEPENDENCY_ERRORS",
    "DEVICE_TOKENS_MOVED",
    "DIGESTS",
    "DLQ",
    "END_TO_END_SECONDS",
    "ESCALATIONS",
    "EVENTS_CLASSIFIED",
    "GROUP_REJOINS",
    "HANDLER_RETRIES",
    "HANDLER_SECONDS",
    "INTERNAL_ERRORS",
    "LEDGER_RESENDS",
    "LEGACY_HEADERS",
    "PRODUCED",
    "PROVIDER_CIRCUIT_STATE",
    "PROVIDER_FAILOVERS",
    "PROVIDER_SECONDS",
    "READY",
    "RECEIPTS_FOREIGN",
    "RETRIES_EXHAUSTED",
    "RETRIES_SCHEDULED",
    "SES_QUOTA_FALLBACK",
    "WEBHOOK_ENDPOINTS_DISABLED",
    "count_legacy_headers",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONSUMED = Counter("herald_consumed_total", "Records consumed.", ["consumer", "topic"])
PRODUCED = Counter("herald_produced_total", "Records produced and acknowledged by the broker.", ["topic"])
DLQ = Counter(
    "herald_dlq_total",
    "Records sent to a dead-letter topic, by source topic and reason.",
    ["topic", "reason"],
)
HANDLER_SECONDS = Histogram(
    "herald_handler_seconds",
    "Time to handle one poll batch (decode, decide, produce, commit).",
    ["consumer"],
    buckets=_LATENCY_BUCKETS,
)
HANDLER_RETRIES = Counter(
    "herald_handler_retries_total", "Batches retried after a retryable handler error.", ["consumer"]
)
COMMITS_ABANDONED = Counter(
    "herald_commits_abandoned_total",
    "Offset commits given up after the batch's outputs were acknowledged; the batch is replayed by "
    "the partition's next owner (reason: rebalance, timeout).",
    ["consumer", "reason"],
)
GROUP_REJOINS = Counter(
    "herald_group_rejoins_total",
    "Times a member rejoined its group to unwedge it (reason: unread_partitions, a member holding "
    "none while partitions went unread; ghost_leader, a follower took the id of a leader that left).",
    ["consumer", "reason"],
)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag",
    "Records behind the high watermark, per partition.",
    ["group", "topic", "partition"],
)
# A rebalance shows as the group's sum dropping below its partition count (nobody reads those
# partitions) until the new assignment lands; a member holding none is idle, not broken.
ASSIGNED_PARTITIONS = Gauge(
    "herald_assigned_partitions",
    "Partitions the group has assigned to this member (0 while it is revoked, rejoining or spare).",
    ["group"],
)
LEGACY_HEADERS = Counter(
    "herald_legacy_header_records_total",
    "Records decoded whose header has the schema fingerprint in Herald 0.1's reversed byte order "
    "(accepted until Herald 0.4; docs/wire-format.md).",
    ["schema"],
)
READY = Gauge(
    "herald_ready", "1 when the process is consuming normally, 0 while paused or starting.", ["consumer"]
)
# herald_consumer_lag is measured between batches: while one batch is stuck on a slow dependency
# the lag stands still (the backlog grows unseen); the age of the batch in hand shows it.
BATCH_AGE = Gauge(
    "herald_batch_age_seconds",
    "Seconds the batch in hand has been handled for (0 between batches); read at scrape time.",
    ["consumer"],
)

# -- the pipeline (shared by classifier, channel consumers and fallback) -------------------------
EVENTS_CLASSIFIED = Counter("herald_events_classified_total", "Domain events classified, by tier.", ["tier"])
CLASSIFIER_DECISIONS = Counter(
    "herald_classifier_decisions_total",
    "Per-channel decisions of the classifier: routed, suppressed, deferred or dropped, with the reason.",
    ["tier", "channel", "decision", "reason"],
)
DELIVERIES = Counter(
    "herald_deliveries_total",
    "Delivery attempts finished by channel consumers, by outcome status.",
    ["channel", "lane", "provider", "status"],
)
PROVIDER_SECONDS = Histogram(
    "herald_provider_request_seconds",
    "Latency of one provider call.",
    ["channel", "provider"],
    buckets=_LATENCY_BUCKETS,
)
PROVIDER_CIRCUIT_STATE = Gauge(
    "herald_provider_circuit_state",
    "Circuit breaker of a provider as this process last saw it: 0 closed, 1 half-open, 2 open.",
    ["channel", "provider"],
)
PROVIDER_FAILOVERS = Counter(
    "herald_provider_failovers_total",
    "Messages a provider did not take (breaker open, a retryable refusal, a tenant sender it refused) "
    "passed to the next one.",
    ["channel", "provider", "reason"],
)
END_TO_END_SECONDS = Histogram(
    "herald_end_to_end_seconds",
    "From the domain event's occurred_at to the channel outcome.",
    ["tier", "channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
ESCALATIONS = Counter(
    "herald_escalations_total",
    # Counted where decided, before the commit: a poll retried after an outage, or a batch undone
    # and fired one by one, counts its escalations again (the email itself goes once, by its key).
    "Escalations to another channel, by reason (decisions; a retried poll counts again).",
    ["tier", "reason"],
)
DIGESTS = Counter("herald_digests_sent_total", "Digest emails produced.", [])
RECEIPTS_FOREIGN = Counter(
    "herald_receipts_foreign_total",
    # An end-user token may name any notification id (they are computable): nonzero means a
    # client posts receipts for other users' notifications, by bug or on purpose.
    "Receipts from POST /v1/receipts dropped: their user is not the notification's.",
    [],
)
RETRIES_SCHEDULED = Counter(
    "herald_retries_scheduled_total", "Retries armed by the fallback consumer.", ["channel"]
)
RETRIES_EXHAUSTED = Counter("herald_retries_exhausted_total", "Messages whose retries ran out.", ["channel"])
CRITICAL_UNDELIVERED = Counter(
    "herald_critical_undelivered_total", "Critical notifications no channel delivered in time.", []
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "herald_webhook_endpoints_disabled_total", "Webhook endpoints disabled automatically.", ["reason"]
)
DEVICE_TOKENS_MOVED = Counter(
    "herald_device_tokens_moved_total",
    "Push tokens registered by a user while registered to another: the token moved to the new user.",
)
INTERNAL_ERRORS = Counter(
    "herald_internal_errors_total",
    "Deliveries that failed with an unclassified error (outcome reason internal_error, retried): "
    "each one is a classification to add; by consumer and Python error class.",
    ["consumer", "error_class"],
)
DEPENDENCY_ERRORS = Counter(
    "herald_dependency_errors_total",
    "Failures of a dependency seen by a process; dependency is one of: postgres, redis.",
    ["dependency", "consumer"],
)


def count_legacy_headers(codec: Codec) -> None:
    """Count in :data:`LEGACY_HEADERS` every record ``codec`` decodes from a Herald 0.1 header."""
    codec.on_legacy_header = lambda contract: LEGACY_HEADERS.labels(contract.name).inc()


AMBIGUOUS_DELIVERIES = Counter(
    "herald_ambiguous_deliveries_total",
    "Sends the provider may or may not have taken (in flight at a crash, or a provider timeout), "
    "not resent (failed_permanent/ambiguous).",
    ["channel", "lane"],
)
LEDGER_RESENDS = Counter(
    "herald_ledger_resends_total",
    "Replayed messages found in flight from a dead process and sent again (critical/high, idempotent channels).",
    ["channel", "lane"],
)
SES_QUOTA_FALLBACK = Counter(
    "herald_ses_quota_fallback_total",
    "SES sends paced by the local fallback rate because the shared Redis quota was unavailable.",
    ["lane"],
)
