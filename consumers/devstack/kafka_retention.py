"""Retention for the S3-backed broker's log: batches that every consumer group has read, once old.

tansu's S3 engine stores one object per produced batch and never deletes one, and every fetch
lists all the batches of its partition. On moto, whose listing walks the whole bucket for every
page, a fetch costs more with every batch ever stored, until the broker falls behind (an hour at
8 events/s stores tens of thousands). :class:`KafkaRetention` deletes batches, as a Kafka broker
deletes old segments, so the cost of a fetch stays flat.

Kafka's retention is days; a test run's is minutes, so it must not cost a consumer that is behind
(a pipeline held up by a fault) records that days of retention would have kept. A batch goes once
it is older than the retention **and** every group that has committed on its partition has
committed past it. Like Kafka, it never deletes the newest batch of a partition (the active
segment): tansu reads a partition's end offset from its newest object. A reader without a group
(the chaos ledger) says where it is with :meth:`KafkaRetention.hold`, and is waited for the same way.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["KafkaRetention", "StoredBatch", "committed_floor", "expired", "partition_path"]

_RECORDS = "/records/"
_GROUPS = "/groups/consumers/"


@dataclass(frozen=True)
class StoredBatch:
    key: str  # clusters/<cluster>/topics/<topic>/partitions/<partition>/records/<offset>.batch
    modified: float  # seconds since the epoch

    @property
    def partition(self) -> str:
        return self.key.rpartition(_RECORDS)[0]

    @property
    def offset(self) -> int:
        return int(self.key.rpartition("/")[2].partition(".")[0])


def is_batch(key: str) -> bool:
    return _RECORDS in key and key.endswith(".batch")


def partition_path(topic: str, partition: int, cluster: str = "tansu_cluster") -> str:
    """Where tansu keeps a partition (its batches are under ``<path>/records/``)."""
    return f"clusters/{cluster}/topics/{topic}/partitions/{partition:0>10}"


def offsets_key_partition(key: str) -> str | None:
    """``clusters/C/groups/consumers/G/offsets/T/partitions/P.json`` -> ``clusters/C/topics/T/partitions/P``."""
    cluster, sep, rest = key.partition(_GROUPS)
    parts = rest.removesuffix(".json").split("/")
    if (
        not sep
        or not key.endswith(".json")
        or len(parts) != 5
        or parts[1] != "offsets"
        or parts[3] != "partitions"
    ):
        return None
    return f"{cluster}/topics/{parts[2]}/partitions/{parts[4]}"


def committed_floor(commits: Iterable[tuple[str, int]]) -> dict[str, int]:
    """(partition, a group's committed offset) -> partition -> the lowest: what every group has read."""
    floor: dict[str, int] = {}
    for partition, offset in commits:
        floor[partition] = min(offset, floor.get(partition, offset))
    return floor


def expired(
    batches: Iterable[StoredBatch], now: float, retention_s: float, committed: Mapping[str, int] | None = None
) -> list[str]:
    """The keys of batches stored more than ``retention_s`` ago and, on a partition in
    ``committed``, wholly below its offset; never a partition's newest: the highest offset, and
    every batch of the latest modification time (tansu takes the end offset from the newest object;
    the store's clock may have one-second resolution)."""
    by_partition: dict[str, list[StoredBatch]] = {}
    for b in batches:
        by_partition.setdefault(b.partition, []).append(b)
    old: list[str] = []
    for partition, stored in by_partition.items():
        stored.sort(key=lambda b: b.offset)
        newest = max(b.modified for b in stored)
        floor = (committed or {}).get(partition)
        for b, after in itertools.pairwise(stored):  # the newest has no successor: kept
            read = floor is None or after.offset <= floor  # every record of b is below the commit
            if b.modified != newest and now - b.modified > retention_s and read:
                old.append(b.key)
    return sorted(old)


class KafkaRetention:
    """A thread that applies :func:`expired` to the bucket every ``every_s`` seconds."""

    def __init__(self, endpoint: str, bucket: str, retention_s: float, every_s: float | None = None) -> None:
        self.bucket = bucket
        self.retention_s = retention_s
        self.every_s = every_s if every_s is not None else max(1.0, retention_s / 5)
        self.deleted = 0
        self.kept = 0  # batches left after the last sweep
        self.errors = 0
        self.sweeps = 0  # completed: a test waits for sweeps to have run, not for a guessed time
        self._holds: dict[int, dict[str, int]] = {}  # id(reader) -> partition path -> next offset it reads
        self._s3: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-retention", daemon=True)

    def start(self) -> KafkaRetention:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def hold(self, reader: object, positions: Mapping[str, int]) -> None:
        """``reader`` (without a group) has read each partition up to its offset: keep the rest."""
        self._holds[id(reader)] = {**self._holds.get(id(reader), {}), **positions}

    def release(self, reader: object) -> None:
        self._holds.pop(id(reader), None)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except (BotoCoreError, ClientError, OSError, ValueError):  # the store is down or restarting
                self.errors += 1

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete what has expired now; the keys deleted."""
        batches: list[StoredBatch] = []
        commits: list[tuple[str, int]] = []
        for key, modified in self._list():
            if is_batch(key):
                batches.append(StoredBatch(key, modified))
            elif (partition := offsets_key_partition(key)) is not None:
                body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                commits.append((partition, int(json.loads(body)["offset"])))
        commits += [held for holds in list(self._holds.values()) for held in holds.items()]
        old = expired(
            batches, time.time() if now is None else now, self.retention_s, committed_floor(commits)
        )
        for i in range(0, len(old), 1000):  # DeleteObjects takes 1,000 keys at most
            chunk = [{"Key": k} for k in old[i : i + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
        self.deleted += len(old)
        self.kept = len(batches) - len(old)
        self.sweeps += 1
        return old

    def _list(self) -> Iterator[tuple[str, float]]:
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="clusters/"
        ):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"].timestamp()
