"""The console's one-line confirmations after an action: a fixed set of messages chosen by code.

An action redirects to ``?done=<code>&<field>=<value>…``; the page renders the code's sentence
with the values filled in. A link anyone can craft therefore shows only one of these sentences,
and each value must have its field's own form: an endpoint id as Herald makes them
(``ep_`` + 24 hex digits), counts in digits, a time as ``YYYY-MM-DDTHH:MM``, a topic among this
Herald's dead-letter topics. No attacker-written words inside the trusted console (a host name
posing as an endpoint id, say). An endpoint given its own id (``herald endpoints add --id``) gets
no confirmation line; the page's list shows its new state all the same. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

__all__ = ["MESSAGES", "flash_query", "flash_text"]

MESSAGES: dict[str, str] = {
    "dlq_replayed": "replayed {n} record(s) from {topic} ({skipped} skipped)",
    "endpoint_disabled": "{endpoint} disabled",
    "endpoint_enabled": "{endpoint} enabled",
    "endpoint_resent": "{endpoint}: re-sent {n} message(s) since {since}",
}
_FIELDS = {code: re.findall(r"{(\w+)}", text) for code, text in MESSAGES.items()}
_ENDPOINT_ID = re.compile(r"ep_[0-9a-f]{24}")  # channels.webhook.endpoints_pg.new_endpoint_id
_COUNT = re.compile(r"[0-9]{1,9}")
_MINUTE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}")


def _rules(dlq_topics: Collection[str]) -> dict[str, Callable[[str], str | None]]:
    """Per field: the value to show for a query value, or None to show no sentence at all."""
    return {
        "endpoint": lambda v: v if _ENDPOINT_ID.fullmatch(v) else None,
        "n": lambda v: v if _COUNT.fullmatch(v) else None,
        "skipped": lambda v: v if _COUNT.fullmatch(v) else None,
        "since": lambda v: v if _MINUTE.fullmatch(v) else None,
        "topic": lambda v: v if v in dlq_topics else None,
    }


def flash_query(code: str, **values: object) -> dict[str, str]:
    """The redirect's query for ``code``; ValueError for an unknown code or a missing field."""
    if code not in MESSAGES or set(values) != set(_FIELDS[code]):
        raise ValueError(f"flash {code!r} takes {_FIELDS.get(code)}, not {sorted(values)}")
    return {"done": code, **{k: str(v) for k, v in values.items()}}


def flash_text(query: Mapping[str, str], dlq_topics: Collection[str] = ()) -> str | None:
    """The sentence a page shows for its query string, or None (no code, unknown code, or a value
    not of its field's form; ``dlq_topics``: the topics a ``topic`` value may name)."""
    fields = _FIELDS.get(query.get("done", ""))
    if fields is None:
        return None
    rules = _rules(dlq_topics)
    values = {f: rules[f](query.get(f, "")) for f in fields}
    if any(v is None for v in values.values()):
        return None
    return MESSAGES[query["done"]].format(**values)
