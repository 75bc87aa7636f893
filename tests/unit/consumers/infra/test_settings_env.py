"""HERALD_* variables read strictly: misspellings, out-of-range values, comma-separated lists."""

from __future__ import annotations

import pytest

from consumers.infra.settings import HeraldSettings, load_settings
from consumers.infra.settings_env import setting_variables
from schemas.errors import ConfigurationError
from schemas.models import Channel


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("HERALD_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    return monkeypatch


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> HeraldSettings:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("HERALD_WEBHOOK__ALLOW_HOST", "HERALD_WEBHOOK__ALLOW_HOSTS"),
        ("HERALD_RUNTIME_MAX_BATCH", "HERALD_RUNTIME__MAX_BATCH"),
        ("HERALD_KAFKA_BOOTSTRAP", "HERALD_KAFKA_BOOTSTRAP_SERVERS"),
        ("HERALD_EMAIL__FROM", "HERALD_EMAIL__FROM_ADDRESS"),
    ],
)
def test_a_misspelled_variable_names_the_closest_valid_one(
    monkeypatch: pytest.MonkeyPatch, name: str, closest: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, **{name: "1"})
    assert str(err.value).startswith(f"{name} is not a Herald setting; did you mean {closest}?")
    assert "\n" not in str(err.value)


def test_unrelated_variables_and_tool_knobs_are_not_settings_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(
        monkeypatch,
        HERALD_CHAOS_EVENTS="10000",
        HERALD_BENCH_EVENTS="5",
        HERALDRY="x",
        HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR__LOW="7",
        HERALD_WEBHOOK='{"https_only": true}',
    )
    assert settings.classifier.rate_limits_per_hour["low"] == 7  # type: ignore[index]
    assert settings.webhook.https_only


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HERALD_RUNTIME__MAX_BATCH", "-1", "HERALD_RUNTIME__MAX_BATCH=-1: input should be greater than 0"),
        (
            "HERALD_SCHEDULER__BATCH_SIZE",
            "0",
            "HERALD_SCHEDULER__BATCH_SIZE=0: input should be greater than 0",
        ),
        (
            "HERALD_WEBHOOK__TOTAL_TIMEOUT_S",
            "0",
            "HERALD_WEBHOOK__TOTAL_TIMEOUT_S=0: input should be greater",
        ),
        ("HERALD_AWS__READ_TIMEOUT_S", "-2.5", "HERALD_AWS__READ_TIMEOUT_S=-2.5: input should be greater"),
        ("HERALD_API__PORT", "70000", "HERALD_API__PORT=70000: input should be less than or equal to 65535"),
        ("HERALD_FALLBACK__RETRY_JITTER", "2", "HERALD_FALLBACK__RETRY_JITTER=2: input should be less"),
        ("HERALD_PARTITIONS", "many", "HERALD_PARTITIONS=many: input should be a valid integer"),
        (
            "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR__LOW",
            "-3",
            "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR__LOW=-3: input should be greater than or equal to 0",
        ),
        ("HERALD_FALLBACK__RETRY_SCHEDULES_S", '{"push": [0]}', "HERALD_FALLBACK__RETRY_SCHEDULES_S="),
        (
            "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR",
            "{oops",
            "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR: not valid",
        ),
        ("HERALD_API__JWT_SECRET", "", None),  # an empty secret is a valid string; shown never
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str | None
) -> None:
    if message is None:
        _load(monkeypatch, **{name: value})
        return
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, **{name: value})
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_secret_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, HERALD_API__JWT_ALGORITHM="RS256", HERALD_API__JWT_SECRET="hunter2-hunter2")
    assert "hunter2" not in str(err.value)
    assert str(err.value).startswith("HERALD_API__JWT_ALGORITHM=RS256: input should be 'HS256' or 'EdDSA'")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"]),
        ("127.0.0.1, 10.0.0.0/8", ["127.0.0.1", "10.0.0.0/8"]),
        ('["127.0.0.1/32"]', ["127.0.0.1/32"]),
        ("[]", []),
    ],
)
def test_lists_read_as_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    assert list(_load(monkeypatch, HERALD_WEBHOOK__ALLOW_HOSTS=value).webhook.allow_hosts) == expected


def test_enum_lists_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(monkeypatch, HERALD_CLASSIFIER__QUIET_HOURS_CHANNELS="push,sms")
    assert settings.classifier.quiet_hours_channels == [Channel.PUSH, Channel.SMS]


def test_every_numeric_setting_has_a_bound() -> None:
    """Negative sizes and zero timeouts are refused by the model itself, for every number."""
    unbounded = []
    for var, info in setting_variables(HeraldSettings).items():
        if info.annotation in (int, float) or str(info.annotation) in ("float | None", "int | None"):
            bounds = [m for m in info.metadata if type(m).__name__ in ("Gt", "Ge")]
            if not bounds:
                unbounded.append(var)
    assert not unbounded


def test_a_short_unsubscribe_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, HERALD_API__UNSUBSCRIBE_SECRET="s" * 31)
    assert "HERALD_API__UNSUBSCRIBE_SECRET" in str(err.value) and "32 bytes" in str(err.value)
    secret = _load(monkeypatch, HERALD_API__UNSUBSCRIBE_SECRET="s" * 32).api.unsubscribe_secret
    assert secret is not None and len(secret.get_secret_value()) == 32


@pytest.mark.parametrize(
    "value",
    [
        '{"acme": "Acme"}',  # no address at all
        '{"acme": "Acme <hi@>"}',
        '{"acme": "hi@acme.example, other@acme.example"}',  # two senders
        '{"acme": "Acme <hi@acme.example>\\nBcc: x@y.example"}',  # a header smuggled in
        '{"acme": "Acme <noreply@\u00e1cme.example>"}',  # not ASCII: no SMTPUTF8, SES wants xn--
    ],
)
def test_a_tenant_from_that_is_not_one_address_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # On SMTP it is also the envelope sender: a bad one would be found by that tenant's first mail.
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, HERALD_EMAIL__TENANT_FROM_ADDRESSES=value)
    assert "HERALD_EMAIL__TENANT_FROM_ADDRESSES" in str(err.value) and "'acme'" in str(err.value)


def test_a_non_ascii_from_names_its_ascii_form(monkeypatch: pytest.MonkeyPatch) -> None:
    # A display name need not be ASCII: compose encodes it (RFC 2047). The address must be.
    value = '{"acme": "\u00c1cme <hi@acme.example>"}'
    email = _load(monkeypatch, HERALD_EMAIL__TENANT_FROM_ADDRESSES=value).email
    assert email.tenant_from_addresses["acme"] == "\u00c1cme <hi@acme.example>"
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, HERALD_EMAIL__FROM_ADDRESS="Herald <noreply@\u00e1cme.example>")
    assert "noreply@xn--cme-dla.example" in str(err.value)


def test_tenant_from_addresses_and_the_default_from_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    value = '{"acme": "Acme <hi@acme.example>", "globex": "noreply@globex.example"}'
    email = _load(monkeypatch, HERALD_EMAIL__TENANT_FROM_ADDRESSES=value).email
    assert email.tenant_from_addresses["acme"] == "Acme <hi@acme.example>"
    with pytest.raises(ConfigurationError) as err:
        _load(monkeypatch, HERALD_EMAIL__FROM_ADDRESS="Herald")
    assert "HERALD_EMAIL__FROM_ADDRESS" in str(err.value)
