"""Reading ``HERALD_*`` variables strictly: comma-separated lists, misspelled names, one-line errors.

A mistyped variable is otherwise silently ignored (the default applies and nobody notices), and
pydantic's own errors are multi-line reports that name model fields, not the variables a user set.
Everything here works on any settings class, so ``settings.py`` can use it without an import cycle.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.exceptions import SettingsError

from schemas.errors import ConfigurationError

__all__ = [
    "CommaListEnvSource",
    "check_environment",
    "explain_settings_error",
    "explain_validation_error",
    "load_strictly",
    "setting_variables",
]

S = TypeVar("S", bound=BaseSettings)
PREFIX = "HERALD_"
# Read by the test and benchmark tools, not by Herald; they reach Herald's processes by inheritance.
NOT_SETTINGS = ("HERALD_CHAOS_", "HERALD_BENCH_")
# Read without the prefix too (how every tool names them); see HeraldSettings.
BARE_NAMES = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))


def _is_dict(annotation: Any) -> bool:
    return get_origin(annotation) is dict


class CommaListEnvSource(EnvSettingsSource):
    """The environment source, where a list also reads as ``a,b,c`` (JSON still works)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if field is None or not isinstance(value, str) or not _is_list(field.annotation):
                raise
            return [part.strip() for part in value.split(",") if part.strip()]


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        yield var, info
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from _walk(sub, f"{var}__")


def setting_variables(model: type[BaseSettings]) -> dict[str, FieldInfo]:
    """Every ``HERALD_*`` name the model reads (groups too: ``HERALD_WEBHOOK`` takes JSON), by field."""
    return dict(_walk(model, PREFIX))


def _known(name: str, variables: Mapping[str, FieldInfo]) -> bool:
    if name in variables or name.startswith(NOT_SETTINGS):
        return True
    # A dict field's keys nest further: HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR__LOW.
    return any(name.startswith(f"{var}__") and _is_dict(info.annotation) for var, info in variables.items())


def check_environment(model: type[BaseSettings], environ: Mapping[str, str]) -> None:
    """Raise ConfigurationError for a ``HERALD_*`` variable no setting reads, naming the closest one."""
    variables = setting_variables(model)
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or _known(upper, variables):
            continue
        close = difflib.get_close_matches(upper, list(variables), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigurationError(
            f"{name} is not a Herald setting{hint} (`herald settings` lists every variable)"
        )


def _variable(loc: tuple[int | str, ...], model: type[BaseModel]) -> tuple[str, FieldInfo | None]:
    """The environment variable a validation error's location points at."""
    parts: list[str] = []
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for step in loc:
        if isinstance(step, int):
            break
        key = str(step)
        if current is None:  # a dict key: HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR__LOW
            parts.append(key)
            break
        if key.upper() in BARE_NAMES or key.upper().removeprefix(PREFIX) in BARE_NAMES:
            return key.upper().removeprefix(PREFIX), current.model_fields.get(key.lower())
        info = current.model_fields.get(key)
        if info is None:
            parts.append(key)  # a dict key
            break
        parts.append(key)
        sub = info.annotation
        current = sub if isinstance(sub, type) and issubclass(sub, BaseModel) else None
    return PREFIX + "__".join(p.upper() for p in parts), info


def _secret(info: FieldInfo | None) -> bool:
    return info is not None and "SecretStr" in str(info.annotation)


def explain_validation_error(
    exc: ValidationError, model: type[BaseModel], environ: Mapping[str, str]
) -> ConfigurationError:
    """One line per bad value, each naming the variable to fix (and its value, unless secret)."""
    lines = []
    for error in exc.errors():
        var, info = _variable(error["loc"], model)
        if var not in environ:  # set through its group's JSON (HERALD_WEBHOOK='{...}') or a dict's key
            var = max((n for n in environ if var.startswith(n.upper())), key=len, default=var)
        value = environ.get(var)
        shown = f"={value}" if value is not None and not _secret(info) else ""
        lines.append(f"{var}{shown}: {error['msg'][0].lower()}{error['msg'][1:]}")
    return ConfigurationError("\n".join(dict.fromkeys(lines)))


def explain_settings_error(
    exc: SettingsError, model: type[BaseSettings], environ: Mapping[str, str]
) -> ConfigurationError:
    """pydantic-settings could not decode a JSON value: name the variable that holds it."""
    variables = setting_variables(model)
    for name, value in sorted(environ.items()):
        info = variables.get(name.upper())
        if info is None:
            continue
        annotation = info.annotation
        if not (_is_dict(annotation) or (isinstance(annotation, type) and issubclass(annotation, BaseModel))):
            continue
        try:
            json.loads(value)
        except ValueError as err:
            return ConfigurationError(f"{name}: not valid JSON ({err})")
    return ConfigurationError(str(exc))


def load_strictly(model: type[S], environ: Mapping[str, str]) -> S:
    """``model()``, or ConfigurationError: an unknown ``HERALD_*`` variable or a bad value, one line
    per problem, each naming the variable. ``environ`` is the environment ``model()`` reads."""
    check_environment(model, environ)
    try:
        return model()
    except ValidationError as exc:
        raise explain_validation_error(exc, model, environ) from None
    except SettingsError as exc:
        raise explain_settings_error(exc, model, environ) from None
