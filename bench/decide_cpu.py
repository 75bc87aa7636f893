"""The classifier's CPU per event without I/O: decode → route → plan → finalize → encoded outputs.

``python -m bench.decide_cpu --events 50000`` runs the mixed events of ``make bench`` against
in-memory profiles drawn like bench/seed.py's users (every rate-limit request granted) and
prints the process CPU time per event (``time.process_time``, so a busy machine changes it
little) and a SHA-256 over every output record: a change to the hot path must leave that
digest equal (same events, same clock → byte-identical outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

from bench.common import mixed_events
from consumers.classifier.decide import finalize, plan
from consumers.classifier.handler import decide_config
from consumers.classifier.profile import Endpoint, Profile
from consumers.classifier.quiet_hours import QuietWindow
from consumers.classifier.routing import load_routing
from consumers.infra.settings import HeraldSettings
from schemas.codec import default_codec
from schemas.identifiers import check_event
from schemas.models import Channel, DomainEvent

__all__ = ["profiles", "run"]

_ZONES = ["Europe/Lisbon", "America/Sao_Paulo", "Asia/Kathmandu", "UTC", "America/New_York", "Asia/Tokyo"]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def profiles(users: int, seed: int = 11) -> dict[str, Profile]:
    """In-memory users with bench/seed.py's proportions (email, phone, quiet hours, preferences)."""
    rnd = random.Random(seed)
    out = {}
    for i in range(users):
        uid = f"u{i}"
        prefs = {}
        if rnd.random() < 0.1:
            prefs[("marketing", Channel.EMAIL)] = False
        if rnd.random() < 0.3:
            prefs[("activity", Channel.PUSH)] = True
        out[uid] = Profile(
            uid,
            known=True,
            email=f"{uid}@example.com" if rnd.random() < 0.95 else None,
            phone=f"+1415{5550000 + i:07d}" if rnd.random() < 0.6 else None,
            timezone=rnd.choice(_ZONES),
            locale=rnd.choice(["en", "en", "pt-BR", "pt"]),
            quiet=QuietWindow(dtime(22), dtime(7)) if rnd.random() < 0.2 else None,
            preferences=prefs,
            endpoints=(Endpoint(f"ep-{uid}"),) if rnd.random() < 0.01 else (),
        )
    return out


def run(events: int, users: int = 20_000, batch: int = 500) -> tuple[float, str, int]:
    """(CPU µs per event, SHA-256 of every output record, outputs) over ``events`` mixed events."""
    settings = HeraldSettings()
    table = load_routing(settings.classifier.routing_file, settings.classifier.default_tier)
    cfg = decide_config(settings, default_codec())
    users_ = profiles(users)
    raw = [value for _, value in mixed_events(events, users=users, occurred_at=NOW - timedelta(minutes=3))]
    digest = hashlib.sha256()
    outputs = 0
    started = time.process_time()
    for start in range(0, len(raw), batch):
        for value in raw[start : start + batch]:
            event = default_codec().decode(value, DomainEvent)
            check_event(event)
            route = table.match(event.type)
            assert route is not None
            p = plan(event, route, users_[event.user_id], NOW, cfg)
            d = finalize(p, [True] * len(p.pending), NOW, cfg)
            for out in d.outputs:
                digest.update(out.topic.encode() + (out.key or b"") + out.value)
                outputs += 1
            for timer in d.timers:
                digest.update(timer.key.encode() + (timer.payload or b""))
    cpu = time.process_time() - started
    return cpu / events * 1e6, digest.hexdigest(), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    us, digest, outputs = run(args.events)
    print(f"{us:.1f} µs CPU/event over {args.events:,} events, {outputs:,} outputs, sha256 {digest}")


if __name__ == "__main__":
    main()
