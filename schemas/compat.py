"""Backward-compatibility check between two versions of a contract.

"Backward compatible" as in Avro schema resolution: a reader on ``new`` can read every
record written with ``old``. Used by the tests that guard every shipped schema version,
and available to services that add a version.
"""

from __future__ import annotations

from typing import Any

from schemas.errors import ConfigurationError

__all__ = ["IncompatibleSchema", "backward_problems", "check_backward"]

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


class IncompatibleSchema(ConfigurationError, ValueError):
    """A reader schema that cannot resolve data written with an older schema."""


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"]) if isinstance(schema["type"], str) else _kind(schema["type"])
    return str(schema)


def backward_problems(reader: Any, writer: Any, path: str = "$") -> list[str]:
    """Every reason a ``reader`` cannot read data written with ``writer`` (empty: compatible)."""
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        return [p for branch in writer for p in backward_problems(reader, branch, path)]
    if rk == "union":
        for branch in reader:
            if not backward_problems(branch, writer, path):
                return []
        return [f"{path}: writer type {wk} matches no branch of the reader's union"]
    if rk != wk and rk not in _PROMOTIONS.get(wk, set()):
        return [f"{path}: writer type {wk} cannot be read as {rk}"]
    if rk == "record":
        return _record_problems(reader, writer, path)
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{path}: enum symbols {sorted(missing)} unknown to the reader, which has no default"]
    if rk == "array":
        return backward_problems(reader["items"], writer["items"], f"{path}[]")
    if rk == "map":
        return backward_problems(reader["values"], writer["values"], f"{path}{{}}")
    if rk == "fixed" and reader.get("size") != writer.get("size"):
        return [f"{path}: fixed size {writer.get('size')} read as {reader.get('size')}"]
    return []


def _record_problems(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    written = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        names = [field["name"], *field.get("aliases", [])]
        source = next((written[n] for n in names if n in written), None)
        where = f"{path}.{field['name']}"
        if source is None:
            if "default" not in field:
                problems.append(f"{where}: new field without a default")
            continue
        problems.extend(backward_problems(field["type"], source["type"], where))
    return problems


def check_backward(reader: dict[str, Any], writer: dict[str, Any]) -> None:
    """Raise :class:`IncompatibleSchema` listing every problem, if there is one."""
    problems = backward_problems(reader, writer)
    if problems:
        raise IncompatibleSchema("; ".join(problems))
