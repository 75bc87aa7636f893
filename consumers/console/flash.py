"""The console's one-line confirmations after an action: a fixed set of messages chosen by code.

An action redirects to ``?done=<code>&<field>=<value>…``; the page renders the code's sentence
with the values filled in. A link anyone can craft therefore shows only one of these sentences,
and each value is one word (a name, a number, a time): no attacker-written prose inside the
trusted console. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["MESSAGES", "flash_query", "flash_text"]

MESSAGES: dict[str, str] = {
    "dlq_replayed": "replayed {n} record(s) from {topic} ({skipped} skipped)",
    "endpoint_disabled": "{endpoint} disabled",
    "endpoint_enabled": "{endpoint} enabled",
    "endpoint_resent": "{endpoint}: re-sent {n} message(s) since {since}",
}
_FIELDS = {code: re.findall(r"{(\w+)}", text) for code, text in MESSAGES.items()}
_WORD = re.compile(r"[A-Za-z0-9._:@+-]{1,120}")  # topic names, endpoint ids, counts, ISO times


def flash_query(code: str, **values: object) -> dict[str, str]:
    """The redirect's query for ``code``; ValueError for an unknown code or a missing field."""
    if code not in MESSAGES or set(values) != set(_FIELDS[code]):
        raise ValueError(f"flash {code!r} takes {_FIELDS.get(code)}, not {sorted(values)}")
    return {"done": code, **{k: str(v) for k, v in values.items()}}


def flash_text(query: Mapping[str, str]) -> str | None:
    """The sentence a page shows for its query string, or None (no code, unknown code, or a value
    that is not one word)."""
    fields = _FIELDS.get(query.get("done", ""))
    if fields is None:
        return None
    values = {f: query.get(f, "") for f in fields}
    if not all(_WORD.fullmatch(v) for v in values.values()):
        return None
    return MESSAGES[query["done"]].format(**values)
