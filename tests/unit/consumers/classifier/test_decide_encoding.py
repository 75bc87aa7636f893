"""The classifier's hot-path encoding: every record the decision writes is byte for byte what the
codec writes for it, and the fast notification id is uuid5."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.classifier.decide import DecideConfig, finalize, plan
from consumers.classifier.family import Family
from consumers.classifier.profile import Endpoint
from consumers.infra import keys
from schemas.codec import Codec
from schemas.models import ChannelMessage, Record, Tier
from tests.unit.consumers.classifier.test_decide import (
    CFG,
    CODEC,
    NOW,
    QUIET,
    TABLE,
    TYPES,
    event,
    full_profile,
)


def test_hot_path_encoding_is_the_codec_encoding() -> None:
    for tier in Tier:
        route = TABLE.match(TYPES[tier])
        assert route is not None
        for item in plan(event(TYPES[tier]), route, full_profile(quiet=QUIET), NOW, CFG).pending:
            assert CFG.encode_message(item.message) == CODEC.encode(item.message)


class _FastavroCodec(Codec):
    """The encoding before the hot path was specialised: record dicts through fastavro."""

    def encode(self, obj: Record) -> bytes:
        return self.encode_record(obj.SCHEMA, obj.to_record())


@dataclass(frozen=True, slots=True)
class _CodecPathConfig(DecideConfig):
    def encode_message(self, message: ChannelMessage, family: Family | None = None) -> bytes:
        return self.codec.encode(message)


CODEC_PATH = _CodecPathConfig(
    **{f.name: getattr(CFG, f.name) for f in fields(DecideConfig) if not f.name.startswith("_")}
    | {"codec": _FastavroCodec()}
)

_WORDS = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    tier=st.sampled_from(list(Tier)),
    user=_WORDS,
    tenant=st.none() | _WORDS,
    locale=st.none() | st.sampled_from(["en", "pt-BR", "ja"]),
    payload=st.dictionaries(_WORDS, _WORDS, max_size=3),
    age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
    quiet=st.booleans(),
    endpoints=st.integers(0, 3),
    admitted=st.sampled_from([True, False, None]),
)
def test_every_output_of_finalize_is_the_codec_encoding_of_its_record(
    *,
    tier: Tier,
    user: str,
    tenant: str | None,
    locale: str | None,
    payload: dict[str, str],
    age: timedelta,
    quiet: bool,
    endpoints: int,
    admitted: bool | None,
) -> None:
    # The hot path encodes the fields one event's messages share once (schemas/segments.py) and
    # writes outcomes without record dicts: every record must be what the codec writes for it.
    route = TABLE.match(TYPES[tier])
    assert route is not None
    ev = event(TYPES[tier], user, age, tenant=tenant, locale=locale, payload=json.dumps(payload))
    profile = full_profile(
        user,
        quiet=QUIET if quiet else None,
        endpoints=tuple(Endpoint(f"ep{i}-{user}") for i in range(endpoints)),
    )
    p = plan(ev, route, profile, NOW, CFG)
    d = finalize(p, [admitted] * len(p.pending), NOW, CFG)
    old = plan(ev, route, profile, NOW, CODEC_PATH)
    reference = finalize(old, [admitted] * len(old.pending), NOW, CODEC_PATH)
    assert d.outputs
    assert [(o.topic, o.key, o.value) for o in d.outputs] == [
        (o.topic, o.key, o.value) for o in reference.outputs
    ]
    assert [(t.key, t.topic, t.payload) for t in d.timers] == [
        (t.key, t.topic, t.payload) for t in reference.timers
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_fast_notification_id_is_uuid5(event_id: str, user_id: str) -> None:
    # consumers.infra.keys.notification_id skips the UUID object on the hot path; it must stay uuid5.
    ns = uuid.UUID("6f1d1c3e-5b0a-4c7e-9d1f-6e7261616c64")
    try:
        expected = str(uuid.uuid5(ns, f"{event_id}\x1f{user_id}"))
    except UnicodeEncodeError:  # lone surrogates: neither can encode them
        return
    assert keys.notification_id(event_id, user_id) == expected
