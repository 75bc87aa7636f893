"""Herald's wire format against Apache Avro's reference implementation (Java, Debian's
``libavro-java``): a DomainEvent framed by ``BinaryMessageEncoder`` decodes in Herald, and one
Herald encodes decodes in ``BinaryMessageDecoder``. examples/java/HeraldWire.java is the JVM side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.codec import MAGIC, default_codec
from schemas.models import DomainEvent
from schemas.registry import AVRO_DIR
from tests.toolchain import missing_toolchain

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "examples" / "java" / "HeraldWire.java"
SCHEMA = AVRO_DIR / "DomainEvent.v2.avsc"
JARS = [
    "avro",
    "avro-guava-dependencies",
    "jackson-core-asl",
    "jackson-mapper-asl",
    "slf4j-api",
    "commons-compress",
]
CLASSPATH = ":".join(f"/usr/share/java/{jar}.jar" for jar in JARS)
CODEC = default_codec()

EVENTS = [
    DomainEvent(
        event_id="0b6c3f0e-7d2a-4f51-9a8e-1f1f1f1f1f1f",
        type="comment_reply",
        occurred_at=datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=UTC),
        user_id="u-42",
        tenant=None,
        locale="de",
        payload='{"who":"Zoë","post":"Ünïcödé ✓"}',
    ),
    DomainEvent(
        event_id="e-2",
        type="marketing.weekly",
        occurred_at=datetime(1999, 1, 1, tzinfo=UTC),
        user_id="u-7",
        tenant="acme",
        locale=None,
        payload="{}",
    ),
]


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``java -cp ...`` for HeraldWire, compiled once for this module."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        missing_toolchain("a JDK (javac, java)", "install one (Debian: apt-get install default-jdk-headless)")
    if not Path("/usr/share/java/avro.jar").exists():
        missing_toolchain(
            "Apache Avro for Java (/usr/share/java/avro.jar)",
            "`make setup` installs Debian's libavro-java via scripts/setup-system.sh (needs root and apt-get)",
        )
    out = tmp_path_factory.mktemp("java")
    subprocess.run([javac, "-cp", CLASSPATH, "-d", str(out), str(SOURCE)], check=True, timeout=120)
    return [java, "-cp", f"{out}:{CLASSPATH}", "HeraldWire"]


def _run(java: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    # The JVM decodes its arguments and encodes its output in the locale's charset: make it UTF-8.
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    return subprocess.run([*java, *args], capture_output=True, text=True, timeout=60, check=False, env=env)


def _java_encode(java: list[str], e: DomainEvent) -> bytes:
    millis = str(int(e.occurred_at.timestamp() * 1000))
    args = [e.event_id, e.type, millis, e.user_id, e.tenant or "-", e.locale or "-", e.payload]
    done = _run(java, "encode", str(SCHEMA), *args)
    assert done.returncode == 0, done.stderr
    return bytes.fromhex(done.stdout.strip())


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_java_encoded_event_decodes_in_herald(java: list[str], event: DomainEvent) -> None:
    data = _java_encode(java, event)
    assert data[:2] == MAGIC
    assert data[2:10] == CODEC.latest("DomainEvent").fingerprint
    assert CODEC.decode(data, DomainEvent) == event
    assert CODEC.encode(event) == data  # byte for byte the same framing and body


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_herald_encoded_event_decodes_in_java(java: list[str], event: DomainEvent) -> None:
    done = _run(java, "decode", str(SCHEMA), CODEC.encode(event).hex())
    assert done.returncode == 0, done.stderr
    decoded = json.loads(done.stdout)
    assert decoded == {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": int(event.occurred_at.timestamp() * 1000),
        "user_id": event.user_id,
        "tenant": event.tenant,
        "locale": event.locale,
        "payload": event.payload,
        "topic": event.topic,
        "send_at": None if event.send_at is None else int(event.send_at.timestamp() * 1000),
        "cancel_key": event.cancel_key,
    }


def test_java_refuses_herald_0_1_reversed_header(java: list[str]) -> None:
    """Why the byte order matters: the reference decoder does not know the reversed fingerprint."""
    data = CODEC.encode(EVENTS[0])
    reversed_header = data[:2] + data[2:10][::-1] + data[10:]
    done = _run(java, "decode", str(SCHEMA), reversed_header.hex())
    assert done.returncode != 0
    assert "MissingSchemaException" in done.stderr
