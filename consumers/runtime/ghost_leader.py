"""A group whose leader left mid-rebalance: a follower takes the leader's member id and assigns.

The embedded broker (tansu 0.6.0, ``coordinator/group/administrator.rs``) keeps the leader it
named while a group is forming even when that leader sends LeaveGroup: ``Inner<Forming>::leave``
removes the member but not ``state.leader``; ``Inner<Forming>::join`` names a leader only when
there is none; ``Inner<Forming>::sync`` takes an assignment from the leader only; and the session
expiry (``missed_heartbeat``) clears the leader only while it is still a member. So when the
leader leaves after another member's leave started a rebalance (a scale-down SIGTERMs several
members at once), every member, even a new one, joins (the follower pause: 3 s), syncs, is told
``REBALANCE_IN_PROGRESS``, and joins again, forever: the group reads nothing. Upstream fixed the
sync validation in June 2026, not this; no newer build is packaged.

The one way out that build leaves: join *as* the gone leader. ``Inner<Forming>::join`` takes a
member id it does not know as a new member, and that id is the leader's, so the joiner gets the
member list, assigns, and its sync forms the group. Before that the follower leaves under its own
id, so the leader's list holds no ghost of it to hand partitions to.

A follower decides from what its own JoinGroup and SyncGroup answers say: the same other member
named leader, every sync refused, for longer than twice the session timeout. A live leader is told
to rejoin by its next heartbeat and syncs within seconds; a leader that stopped heartbeating is
dropped (and the leadership freed) after one session timeout. Neither lasts that long; a ghost
does. A random part of one session timeout more keeps two stranded followers from taking over
together. On Kafka the takeover join is refused (``UNKNOWN_MEMBER_ID``) and the member joins
afresh, so the check is harmless there. :func:`takeover` decides, without I/O;
:func:`watch_leader` listens to the consumer's group requests.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from consumers.runtime import metrics

__all__ = ["LeaderWatch", "takeover", "watch_leader"]

log = logging.getLogger(__name__)

_JOIN_GROUP, _SYNC_GROUP = 11, 14  # Kafka API keys
_REBALANCE_IN_PROGRESS = 27


@dataclass
class LeaderWatch:
    """Who the group's answers have named leader, and since when every sync has been refused."""

    leader: str | None = None
    since: float = 0.0

    def joined(self, now: float, leader: str, member: str) -> None:
        if leader == member or leader != self.leader:  # leading ourselves, or a new leader: start over
            self.leader = None if leader == member else leader
            self.since = now

    def synced(self) -> None:
        self.leader = None


def takeover(watch: LeaderWatch, *, now: float, refused: bool, after_s: float) -> str | None:
    """The member id to join as: the named leader's, when it has stood for ``after_s`` while every
    sync was refused; else None. ``after_s`` of 0 turns the check off."""
    if after_s <= 0 or not refused or watch.leader is None:
        return None
    return watch.leader if now - watch.since >= after_s else None


def watch_leader(
    consumer: AIOKafkaConsumer,
    name: str,
    *,
    session_timeout_ms: int,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> None:
    """Listen to the group coordinator's JoinGroup and SyncGroup answers of a started consumer
    (aiokafka has no hook for them: its coordinator's ``_send_req`` is wrapped)."""
    coordinator = consumer._coordinator
    if coordinator is None or not hasattr(coordinator, "_send_req"):
        return  # no group (manual assignment)
    session_s = session_timeout_ms / 1000
    after_s = 2 * session_s + jitter() * session_s
    watch = LeaderWatch()
    send: Callable[[Any], Awaitable[Any]] = coordinator._send_req

    async def observed(request: Any) -> Any:
        response = await send(request)
        api_key = getattr(request, "API_KEY", None)
        if api_key == _JOIN_GROUP and response.error_code == 0:
            watch.joined(clock(), response.leader_id, response.member_id)
        elif api_key == _SYNC_GROUP:
            refused = response.error_code == _REBALANCE_IN_PROGRESS
            if response.error_code == 0:  # only an assignment shows the leader alive
                watch.synced()
            leader = takeover(watch, now=clock(), refused=refused, after_s=after_s)
            if leader is not None:
                await _join_as(leader, watch)
        return response

    async def _join_as(leader: str, watch: LeaderWatch) -> None:
        log.warning(
            "%s: group %s has named %s leader for %.0fs and refused every sync (a leader that left "
            "mid-rebalance); leaving as %s and joining as the leader",
            name,
            coordinator.group_id,
            leader,
            clock() - watch.since,
            coordinator.member_id,
        )
        metrics.GROUP_REJOINS.labels(name, "ghost_leader").inc()
        try:  # our own entry out first: the list we assign over must not hold us twice
            await send(LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
        except KafkaError as exc:
            log.info("%s: leaving before the takeover failed: %s", name, exc)
        watch.synced()
        coordinator.member_id = leader  # aiokafka joins again after a refused sync, with this id

    coordinator._send_req = observed
