"""The one settings object. Built once in the CLI from ``HERALD_*`` environment variables.

Nested groups use ``__``: ``HERALD_EMAIL__FROM_ADDRESS``. Three variables are also read without the
prefix because every tool names them so: ``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` and
``REDIS_URL``. docs/settings.md lists every variable and default (``herald settings`` prints them).
"""

from __future__ import annotations

import os
from email.utils import getaddresses
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, NonNegativeInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from channels.aws_settings import AwsSettings
from channels.email.mime import envelope_sender, valid_recipient
from channels.email.smtp_settings import SmtpSettings
from channels.sms.twilio_settings import TwilioSettings
from channels.webhook.webhook_settings import WebhookSettings
from consumers.api.admin.settings import AdminSettings
from consumers.console.settings import ConsoleSettings
from consumers.fallback.settings import FallbackSettings
from consumers.infra.provider_settings import ProvidersSettings
from consumers.infra.settings_env import CommaListEnvSource, load_strictly
from consumers.ledger.settings import LedgerSettings
from consumers.runtime.settings import RuntimeSettings
from schemas.models import Channel, Tier

__all__ = [
    "ApiSettings",
    "ChannelConsumerSettings",
    "ClassifierSettings",
    "EmailSettings",
    "FallbackSettings",
    "HeraldSettings",
    "InAppSettings",
    "PushSettings",
    "RuntimeSettings",
    "SchedulerSettings",
    "SmsSettings",
    "load_settings",
]

PACKAGE_DIR = Path(__file__).parents[1]  # consumers/: routing.yaml and templates/ ship there
MIN_SECRET_BYTES = 32  # HMAC keys (unsubscribe links), as the HS256 JWT secret (RFC 7518 §3.2)


class SchedulerSettings(BaseModel, frozen=True):
    """Durable timers in PostgreSQL (deferred sends, retries, escalations)."""

    poll_interval_s: float = Field(0.1, gt=0, description="How often due timers are looked for.")
    batch_size: int = Field(500, gt=0, description="Due timers released per poll.")


class ClassifierSettings(BaseModel, frozen=True):
    """Event type → tier → channels, with preferences, quiet hours and rate limits."""

    routing_file: Path = Field(PACKAGE_DIR / "routing.yaml", description="Routing table (YAML).")
    default_tier: Tier | None = Field(None, description="Tier for unknown event types; unset: DLQ.")
    lookup_cache_ttl_s: float = Field(30.0, ge=0, description="Recipient/preference cache TTL.")
    lookup_cache_size: int = Field(
        100_000, gt=0, description="Recipients/preferences kept in the lookup cache."
    )
    rate_limits_per_hour: dict[Tier, NonNegativeInt] = Field(
        default_factory=lambda: {Tier.HIGH: 30, Tier.MEDIUM: 20, Tier.LOW: 3, Tier.SYSTEM: 0},
        description="Per user × channel × hour, by tier; 0 = unlimited; critical is never limited.",
    )
    low_stale_after_s: float = Field(
        86_400.0, gt=0, description="Low-tier messages older than this are dropped."
    )
    quiet_hours_channels: list[Channel] = Field(
        default_factory=lambda: [Channel.PUSH, Channel.SMS, Channel.EMAIL],
        description="Channels held by quiet hours (in_app and webhook do not interrupt anyone).",
    )
    rate_limit_prefix: str = Field("herald:rl", description="Prefix of the Redis rate-limit buckets.")
    defer_tiers_when_limiter_down: list[Tier] = Field(
        default_factory=lambda: [Tier.LOW],
        description="Redis down: tiers re-queued (critical and high always flow; the rest fail open).",
    )
    limiter_retry_s: float = Field(
        300.0, gt=0, description="Redis down: delay before a deferred event is classified again."
    )
    limiter_timeout_s: float = Field(
        0.5, gt=0, description="A rate-limit call slower than this counts as Redis down."
    )
    limiter_cooldown_s: float = Field(
        5.0, ge=0, description="After a Redis failure, skip rate limiting this long."
    )
    cancel_ttl_s: int = Field(
        7 * 86_400,
        gt=0,
        description="How long Redis remembers a herald.cancel (events and lane messages with it are refused).",
    )


class EmailSettings(BaseModel, frozen=True):
    from_address: str = Field(
        "Herald <noreply@example.com>", description="From header; its domain must be verified in SES."
    )
    configuration_set: str | None = Field(
        None, description="SES configuration set (bounce/complaint events, reputation)."
    )
    max_send_rate: float | None = Field(None, gt=0, description="SES rate of the account (all processes).")
    priority_share: float = Field(0.3, ge=0, le=1, description="Share of the SES rate bulk can never take.")
    expected_replicas: int = Field(4, ge=1, description="Email processes; Redis down: each sends rate/this.")
    unsubscribe_url: str = Field(
        "https://example.com/unsubscribe?u={user_id}&c={category}",
        description="Bulk mail: one-click List-Unsubscribe URL ({user_id}, {category} filled in).",
    )
    unsubscribe_mailto: str | None = Field(
        "mailto:unsubscribe@example.com", description="Bulk mail: List-Unsubscribe mailto target."
    )
    tenant_from_addresses: dict[str, str] = Field(
        default_factory=dict,
        description='Per-tenant From, one address each, e.g. {"acme": "Acme <noreply@acme.example>"} '
        "(on SMTP also the envelope sender: bounces go to it); other tenants use from_address.",
    )

    @field_validator("from_address")
    @classmethod
    def _one_address(cls, value: str) -> str:
        _check_from(value)
        return value

    @field_validator("tenant_from_addresses")
    @classmethod
    def _tenant_addresses(cls, value: dict[str, str]) -> dict[str, str]:
        # A value the mail parser cannot read would otherwise be found by the first message of
        # that tenant: SES refuses it, and on SMTP the envelope sender would be empty.
        for tenant, address in value.items():
            try:
                _check_from(address)
            except ValueError as exc:
                raise ValueError(f"tenant {tenant!r}: {exc}") from None
        return value


def _check_from(value: str) -> None:
    """A From value must hold exactly one usable address (it is also the SMTP envelope sender)."""
    one = len(getaddresses([value])) == 1 and "\r" not in value and "\n" not in value
    if not (one and valid_recipient(envelope_sender(value))):
        raise ValueError(f"{value!r} is not a From address (e.g. 'Acme <noreply@acme.example>')")
    address = envelope_sender(value)
    if not address.isascii():  # SMTP sends it as ASCII (no SMTPUTF8), SES wants punycode domains
        local, _, domain = address.rpartition("@")
        try:
            hint = f"{local}@{domain.encode('idna').decode()}"
        except UnicodeError:
            hint = "the domain's xn-- form"
        raise ValueError(f"{value!r}: the address must be ASCII, an IDN domain in its xn-- form ({hint})")


class SmsSettings(BaseModel, frozen=True):
    sender_id: str | None = Field("Herald", description="AWS.SNS.SMS.SenderID (alphanumeric, 1-11 chars).")
    max_segments: int = Field(3, gt=0, description="Longer texts fail permanently (payload_too_large).")
    max_send_rate: float = Field(20.0, gt=0, description="SNS Publish calls per second per process.")
    tenant_sender_ids: dict[str, str] = Field(
        default_factory=dict, description='Per-tenant SenderID, e.g. {"acme": "ACME"}; others use sender_id.'
    )


class PushSettings(BaseModel, frozen=True):
    service_account_file: Path | None = Field(None, description="FCM service account JSON file.")
    service_account_json: SecretStr | None = Field(None, description="FCM service account JSON, inline.")
    project_id: str | None = Field(None, description="Default: the service account's project_id.")
    fcm_base_url: str = Field(
        "https://fcm.googleapis.com", description="FCM HTTP v1 API (the fake in the dev stack)."
    )
    token_uri: str | None = Field(None, description="Override the service account's token_uri.")
    ttl_s: int = Field(
        3600, ge=0, description="How long FCM/APNs keep an undelivered push (android ttl, apns-expiration)."
    )
    token_refresh_margin_s: float = Field(
        300.0, ge=0, description="Refresh the OAuth2 token this long before it expires."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one FCM request.")
    max_connections: int = Field(100, gt=0, description="Connection pool size of the shared HTTP/2 client.")
    max_payload_bytes: int = Field(
        4096, gt=0, description="FCM/APNs payload limit; longer bodies are truncated to fit."
    )


class InAppSettings(BaseModel, frozen=True):
    retention_days: int = Field(90, gt=0, description="Read rows older than this move to the archive.")
    archive_retention_days: int = Field(365, ge=0, description="Archive months kept this long; 0: forever.")
    janitor_interval_s: float = Field(
        300.0, gt=0, description="How often the inbox janitor archives old read rows."
    )
    janitor_batch: int = Field(1000, gt=0, description="Rows archived or deleted per janitor statement.")


class ChannelConsumerSettings(BaseModel, frozen=True):
    concurrency: int = Field(64, gt=0, description="Deliveries in flight per process.")
    ledger_ttl_s: int = Field(
        432_000, gt=0, description="Delivery ledger memory; >= the longest retry run (checked at start)."
    )
    ledger_owner_ttl_s: float = Field(10.0, gt=0, description="A process silent this long is dead.")
    inprocess_retries: int = Field(
        2, ge=0, description="Short retries of a retryable error before failed_retryable."
    )
    inprocess_retry_max_s: float = Field(
        2.0, gt=0, description="Longest in-process retry delay; a longer Retry-After goes to the fallback."
    )
    inprocess_budget_s: float = Field(
        2.0,
        ge=0,
        description="Most time one message spends in in-process retries; then failed_retryable, so a "
        "failing recipient holds its batch for seconds at most.",
    )
    batch_deadline_s: float = Field(
        120.0,
        gt=0,
        description="A poll batch still delivering after this (slow provider, long per-key queue): messages not "
        "yet started become failed_retryable (reason batch_deadline) for the fallback consumer to reschedule.",
    )
    dry_run: bool = Field(
        False, description="Send nothing; report every delivery as sent by provider dry_run."
    )


class ApiSettings(BaseModel, frozen=True):
    """The apps' HTTP API (``herald run api``): inbox, preferences, quiet hours, devices, receipts."""

    host: str = Field("0.0.0.0", description="Address the API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port of the API; 0 picks a free port.")
    jwt_algorithm: Literal["HS256", "EdDSA"] = Field("HS256", description="How bearer tokens are signed.")
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key (32+ bytes), or the EdDSA private key PEM (only `herald token` uses it)."
    )
    jwt_public_key: str | None = Field(None, description="EdDSA: the public key PEM that verifies tokens.")
    jwt_tenant_keys: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="Tenants with their own token keys, as JSON {tenant: [key, ...]} (in the install's "
        "JWT_ALGORITHM: HS256 secrets, or EdDSA public key PEMs; several for rotation; none shared with "
        "the install or another tenant): a token whose `tenant` claim names one must be "
        "signed by one of its keys, and the install key no longer verifies tokens for it.",
    )
    jwt_audience: str = Field("herald-api", description="Tokens must carry this `aud`.")
    jwt_issuer: str | None = Field(None, description="If set, tokens must carry this `iss`.")
    jwt_leeway_s: float = Field(30.0, ge=0, description="Clock skew allowed on `exp`/`nbf`/`iat`.")
    token_ttl_s: int = Field(86_400, gt=0, description="Lifetime of tokens minted by `herald token`.")
    rate_limit_requests: int = Field(600, ge=0, description="Requests per token per window; 0 = unlimited.")
    rate_limit_window_s: int = Field(60, gt=0, description="Rate-limit window (fixed, in Redis).")
    rate_limit_key_prefix: str = Field("herald:api:rl", description="Prefix of the Redis rate-limit keys.")
    max_body_bytes: int = Field(65_536, gt=0, description="Larger request bodies get 413.")
    page_size_default: int = Field(20, gt=0, description="`limit` of GET /v1/inbox when none is given.")
    page_size_max: int = Field(100, gt=0, description="Largest `limit` of GET /v1/inbox.")
    max_ids: int = Field(500, gt=0, description="Most ids in one POST /v1/inbox/read.")
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="Comment line sent on idle event streams (for proxies)."
    )
    sse_streams_per_user: int = Field(
        10,
        ge=0,
        description="Most open event streams of one user in one API process (a new one closes the "
        "user's oldest); 0 = unlimited.",
    )
    sse_replay_max: int = Field(
        500, ge=0, description="Most rows replayed on a reconnect with Last-Event-ID."
    )
    devices_per_user: int = Field(
        20,
        gt=0,
        description="Push tokens kept per user: registering one more forgets the least recently registered.",
    )
    cors_origins: list[str] = Field(
        [],
        description="Origins (scheme://host[:port]) of web apps that embed the web components and may call "
        "this API from the browser; empty: no cross-origin calls.",
    )
    stream_ticket_ttl_s: int = Field(
        60,
        gt=0,
        description="Lifetime of a single-use event-stream ticket (EventSource cannot send a token).",
    )
    stream_ticket_key_prefix: str = Field("herald:api:ticket", description="Redis keys of stream tickets.")
    unsubscribe_secret: SecretStr | None = Field(
        None,
        description="HMAC key of unsubscribe links (32+ bytes, like the JWT secret); unset: /v1/unsubscribe "
        "answers 404.",
    )
    unsubscribe_ttl_s: int = Field(60 * 86_400, gt=0, description="How long an unsubscribe link stays valid.")
    preference_centre_url: str = Field(
        "/demo#preferences", description="Where the unsubscribe page links to change other preferences."
    )

    @field_validator("unsubscribe_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A short HMAC key can be brute-forced offline from one link, then links forged for anyone.
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (use random bytes)")
        return value

    swagger_ui: bool = Field(
        False,
        description="Serve Swagger UI at /docs (scripts from a CDN, on the API's and console's origin); "
        "`herald dev` turns it on. /openapi.json is always served.",
    )
    demo_user: str | None = Field(
        None,
        description="`herald dev` only: serve /demo with the web components for this user and mint its "
        "tokens at /demo/token. Never set in production.",
    )


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"HERALD_{name}", name)


class HeraldSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERALD_", env_nested_delimiter="__", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Lists also read as comma-separated values: HERALD_WEBHOOK__ALLOW_HOSTS=127.0.0.1,10.0.0.0/8.
        return init_settings, CommaListEnvSource(settings_cls), dotenv_settings, file_secret_settings

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka brokers, host:port,...",
    )
    # URLs carry passwords: secrets, shown only through redact_url.
    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/postgres"),
        validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL URL (a secret: its password is never printed).",
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=_env("REDIS_URL"),
        description="Redis URL (a secret: its password is never printed).",
    )
    topic_prefix: str = Field("herald", description="Prefix of every topic name (herald.events, ...).")
    partitions: int = Field(4, gt=0, description="Partitions of each topic created by Herald.")
    replication_factor: int = Field(
        1, gt=0, description="Replication factor of each topic created by Herald."
    )
    metrics_host: str = Field("0.0.0.0", description="Address of the /metrics, /healthz, /readyz server.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="/metrics, /healthz, /readyz; 0 picks a free port."
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    templates_dir: Path = Field(
        PACKAGE_DIR / "templates", description="Jinja2 templates, <name>/<locale>/..."
    )
    fanout_chunk: int = Field(
        1000,
        gt=0,
        description="Subscribers read, produced and checkpointed at a time by `herald run fanout`.",
    )
    default_locale: str = Field("en", description="Locale when neither the event nor the user has one.")
    template_url_schemes: list[str] = Field(
        default_factory=lambda: ["https", "http", "mailto"],
        description="URL schemes the `safe_url` template filter lets into href/src; others fail the "
        "message (failed_permanent invalid_url).",
    )

    runtime: RuntimeSettings = RuntimeSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    channel: ChannelConsumerSettings = ChannelConsumerSettings()
    fallback: FallbackSettings = FallbackSettings()
    aws: AwsSettings = AwsSettings()
    email: EmailSettings = EmailSettings()
    sms: SmsSettings = SmsSettings()
    smtp: SmtpSettings = SmtpSettings()
    twilio: TwilioSettings = TwilioSettings()
    providers: ProvidersSettings = ProvidersSettings()
    push: PushSettings = PushSettings()
    in_app: InAppSettings = InAppSettings()
    ledger: LedgerSettings = LedgerSettings()
    console: ConsoleSettings = ConsoleSettings()
    webhook: WebhookSettings = WebhookSettings()
    admin: AdminSettings = AdminSettings()
    api: ApiSettings = ApiSettings()


def load_settings() -> HeraldSettings:
    """The settings from the process environment, strictly: an unknown ``HERALD_*`` variable or a
    bad value raises ConfigurationError with one line per problem, naming the variable."""
    return load_strictly(HeraldSettings, os.environ)
