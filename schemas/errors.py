"""Herald's one exception tree. Every error Herald raises is a :class:`HeraldError`.

It lives in the lowest layer so that every layer (``schemas`` ← ``channels`` ← ``consumers``)
can subclass it. Each error is classified once, where it is defined, along two questions:
is it about *the record* or about *a dependency*, and is trying again any use?

::

    HeraldError
    ├── ConfigurationError        settings, routing file, arguments: fix and restart (exit 2)
    │   ├── RoutingError              consumers.classifier.routing
    │   ├── StepError                 consumers.workflow.steps (a workflow step in the routing file)
    │   ├── UnknownEventType          consumers.preview (no route matches)
    │   ├── IncompatibleSchema        schemas.compat
    │   └── InvalidSecret             channels.webhook.signing
    ├── DependencyUnavailable     a server Herald needs did not answer: retry, pause (retryable)
    │   ├── KafkaUnavailable          consumers.runtime.kafka
    │   ├── DatabaseUnavailable       consumers.infra.db
    │   │   └── MigrationBlocked          consumers.infra.db (a lock a migration waits for)
    │   ├── LookupUnavailable         consumers.classifier.lookup
    │   ├── LimiterUnavailable        consumers.classifier.ratelimit
    │   ├── TicketStoreDown           consumers.api.tickets
    │   └── CancelUnavailable         consumers.workflow.cancel
    ├── RecordError               this record's content can never be processed: dead letter or
    │   │                         failed_permanent with ``reason``, never a retry
    │   ├── InvalidContent            text or structure no channel can carry (invalid_content)
    │   ├── InvalidIdentifier         schemas.identifiers (invalid_event)
    │   ├── DecodeError               schemas.codec
    │   ├── TemplateError             channels.templates
    │   ├── UnsafeUrl                 channels.templates (invalid_url)
    │   ├── LookupRejected            consumers.classifier.lookup (invalid_event)
    │   ├── LimiterRejected           consumers.classifier.ratelimit (invalid_event)
    │   ├── PayloadTooLarge           channels.push.fcm_message
    │   ├── BadUnsubscribeToken       consumers.api.unsubscribe_token
    │   ├── ReusedEventId, StaleBroadcast, CopyTooLarge
    │   │                             consumers.fanout.handler (invalid_event, stale_broadcast, too_large)
    │   └── BlockedDestination        channels.webhook.ssrf
    ├── DeliveryError             a provider's answer, classified in its adapter (channels.base)
    │   ├── RetryableDelivery
    │   └── PermanentDelivery
    ├── CredentialsError          a provider's credentials are unusable (channels.push.fcm_auth)
    ├── WebhookVerificationError  a received webhook failed verification (channels.webhook.signing)
    │   ├── MissingHeader, MalformedHeader, NoMatchingSignature
    │   │                             channels.webhook.signing
    │   ├── TimestampOutOfTolerance   channels.webhook.signing
    │   │   └── StaleTimestamp, FutureTimestamp
    │   ├── SnsSignatureError         channels.sns_verify (an SNS message's signature)
    │   └── Rejected                  consumers.api.feedback (provider feedback not genuine: 403)
    ├── ApiError                  answered over HTTP as RFC 9457 (consumers.api)
    │   ├── AuthError
    │   └── ProblemError
    ├── FieldProblem              consumers.api.admin.event_models (an emitted event's field: 422)
    └── BadRequest, LoginRequired, Forbidden
                                  consumers.console.web (the console's forms and sessions)

``retryable`` says whether the same work may succeed later without anyone changing anything.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ConfigurationError", "DependencyUnavailable", "HeraldError", "InvalidContent", "RecordError"]


class HeraldError(Exception):
    """The root of every error Herald raises on purpose."""

    retryable: ClassVar[bool] = False


class ConfigurationError(HeraldError):
    """Something the operator must fix (a setting, a file, an argument); the process cannot start."""


class DependencyUnavailable(HeraldError):
    """A server Herald depends on (Kafka, PostgreSQL, Redis) failed or timed out; not the record's fault."""

    retryable = True


class RecordError(HeraldError):
    """The record's content is bad: retrying it can never succeed.

    ``reason`` is the machine-readable reason put on the dead letter or the outcome.
    """

    reason: str = "invalid_record"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidContent(RecordError):
    """The message's content cannot be carried by any channel: a lone surrogate or a NUL in its
    text, a payload nested deeper than can be parsed, a value the store refuses."""

    reason = "invalid_content"
