"""Consumer lag per group (pure)."""

from __future__ import annotations

from aiokafka import TopicPartition

from consumers.console.live import group_topics, lag_by_group
from consumers.runtime.topics import Topics


def test_lag_sums_partitions_per_group_and_never_goes_negative() -> None:
    a0, a1, b0 = TopicPartition("h.events", 0), TopicPartition("h.events", 1), TopicPartition("h.outcomes", 0)
    committed = {"herald-classifier": {a0: 10, a1: 5}, "herald-fallback": {b0: 50}}
    ends = {a0: 12, a1: 5, b0: 40}  # a commit past the end (a truncated topic) counts as 0
    assert lag_by_group(committed, ends) == {"herald-classifier": 2, "herald-fallback": 0}
    assert lag_by_group({"g": {a0: 3}}, {}) == {"g": 0}


def test_group_topics_follow_herald_group_names() -> None:
    t = Topics("h")
    assert group_topics("herald-classifier", t) == ["h.events"]
    assert group_topics("herald-ledger", t) == ["h.outcomes", "h.receipts"]
    assert group_topics("herald-channel-in_app-priority", t) == ["h.channel.in_app.priority"]
    assert group_topics("herald-channel-email-bulk", t) == ["h.channel.email.bulk"]
    assert group_topics("herald-channel-fax-priority", t) == []
    assert group_topics("someone-else", t) == []
