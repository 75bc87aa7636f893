"""``herald dev`` (what ``make run`` calls): the whole pipeline on the embedded stack, with a demo stream.

Starts Kafka, PostgreSQL, Redis, moto (SES/SNS), a local FCM, an SMTP server (aiosmtpd), a local
Twilio and a webhook receiver; applies
migrations, creates topics, seeds demo users; runs every Herald process as its own OS
process (as in production); emits demo events; prints every outcome and every delivery the
fake providers accepted. Ctrl-C stops everything; nothing is left running.

Each channel with a second provider has it configured (:data:`DEMO_PROVIDERS`): email SES then
SMTP, SMS SNS then Twilio, behind their shared breakers. So that the second providers are seen
working, the bulk lane's email puts SMTP first and critical SMS puts Twilio first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumers.cli.console import login_url
from consumers.cli.dev_env import ENV_FILE, read_env_file, second_shell_hint, write_env_file
from consumers.cli.tail import format_record, read_topic
from consumers.infra.redact import redact_url
from consumers.infra.settings import HeraldSettings, load_settings
from consumers.runtime.topics import Topics

if TYPE_CHECKING:
    from consumers.devstack import DevStack

__all__ = ["DEV_PROCESSES", "register"]

# Every process `make run` starts: (name, argv after `herald run`).
DEV_PROCESSES: list[tuple[str, list[str]]] = [
    ("classifier", ["classifier"]),
    ("classifier-bulk", ["classifier", "--lane", "bulk"]),  # topic fan-out copies, on the bulk lane
    ("fanout", ["fanout"]),
    ("email-priority", ["channel", "--channel", "email", "--lane", "priority"]),
    ("email-bulk", ["channel", "--channel", "email", "--lane", "bulk"]),
    ("sms", ["channel", "--channel", "sms", "--lane", "priority"]),
    ("push", ["channel", "--channel", "push", "--lane", "priority"]),
    ("in-app", ["channel", "--channel", "in_app", "--lane", "priority"]),
    ("webhook", ["channel", "--channel", "webhook", "--lane", "priority"]),
    ("fallback", ["fallback"]),
    ("api", ["api"]),
    ("inbox-janitor", ["inbox-janitor"]),
    ("ledger", ["ledger"]),
]

# Shortened delays so the demo shows an escalation and a digest within a minute.
DEMO_ENV = {
    "HERALD_FALLBACK__HIGH_ESCALATION_DELAY_S": "10",
    "HERALD_FALLBACK__DIGEST_AFTER_S": "20",
    "HERALD_FALLBACK__DIGEST_WINDOW_S": "60",
    "HERALD_FALLBACK__DIGEST_COLLECT_S": "5",
    "HERALD_FALLBACK__CRITICAL_CHECK_AFTER_S": "15",
    "HERALD_WEBHOOK__ALLOW_HOSTS": '["127.0.0.1/32"]',
    "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
    "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
    "HERALD_RUNTIME__SHUTDOWN_GRACE_S": "10",
    "HERALD_EMAIL__FROM_ADDRESS": "Herald <noreply@herald.dev>",
}

# Several providers per channel, in failover order; a lane and a tier route show the second ones.
DEMO_PROVIDERS = {
    "HERALD_PROVIDERS__EMAIL": json.dumps(["ses", "smtp"]),
    "HERALD_PROVIDERS__SMS": json.dumps(["sns", "twilio"]),
    "HERALD_PROVIDERS__BY_LANE": json.dumps({"bulk": {"email": ["smtp", "ses"]}}),
    "HERALD_PROVIDERS__BY_TIER": json.dumps({"critical": {"sms": ["twilio", "sns"]}}),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dev", help="run everything on the embedded stack with a demo stream (make run)")
    p.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between random demo events")
    p.add_argument("--logs", type=Path, default=Path(".herald-dev"), help="where process logs go")
    p.add_argument(
        "--print-env",
        action="store_true",
        help='print the running demo\'s variables for a second shell: eval "$(herald dev --print-env)"',
    )
    p.set_defaults(func=dev)


def _say(kind: str, text: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {kind:<9} {text}\n")
    sys.stdout.flush()


def _outcome_line(rec: dict[str, Any]) -> str:
    msg = rec.get("message") or {}
    where = rec.get("channel") or "-"
    reason = f" reason={rec['reason']}" if rec.get("reason") else ""
    code = f" code={rec['error_code']}" if rec.get("error_code") else ""
    to = f" to={msg.get('recipient')}" if msg.get("recipient") else ""
    return (
        f"{rec.get('status', '?'):<16} {where:<8} {rec.get('tier', ''):<8} {rec.get('event_type', '')} "
        f"user={rec.get('user_id')}{to}{reason}{code} event={rec.get('event_id')}"
    )


async def _watch_outcomes(settings: HeraldSettings, stop: asyncio.Event) -> None:
    topics = Topics(settings.topic_prefix)
    async for _, _, _, value, headers in read_topic(
        settings.kafka_bootstrap_servers, topics.outcomes, follow=True
    ):
        _say("outcome", _outcome_line(format_record(value, headers)))
        if stop.is_set():
            return


async def _watch_dlq(settings: HeraldSettings, stop: asyncio.Event) -> None:
    topic = f"{Topics(settings.topic_prefix).events}.dlq"
    async for _, _, _, value, headers in read_topic(settings.kafka_bootstrap_servers, topic, follow=True):
        rec = format_record(value, headers)
        _say(
            "dlq",
            f"{rec.get('type', '?')} user={rec.get('user_id')} reason={rec.get('dlq', {}).get('dlq-reason')} "
            f"event={rec.get('event_id')}",
        )
        if stop.is_set():
            return


def _new(seen: dict[str, int], kind: str, items: list[Any]) -> list[Any]:
    """The items not shown yet (providers only ever append)."""
    fresh = items[seen.get(kind, 0) :]
    seen[kind] = len(items)
    return fresh


def _show_ses_sns(data: dict[str, Any], seen: dict[str, int]) -> None:
    ses = data.get("ses", {})
    for m in _new(seen, "ses", ses.get("Message", []) + ses.get("RawMessage", [])):
        subject = m.get("subject") or _raw_subject(m.get("raw_data", ""))
        _say(
            "delivered",
            f"email   via ses to={m.get('destinations', m.get('destination'))} subject={subject!r}",
        )
    for s in _new(seen, "sns", data.get("sns", {}).get("SMS", [])):
        _say("delivered", f"sms     via sns {s}")


def _show_fakes(fakes: dict[str, Any], seen: dict[str, int]) -> None:
    for r in _new(seen, "smtp", fakes["smtp"].messages()):
        _say("delivered", f"email   via smtp to={list(r.rcpt_tos)} subject={str(r.message['Subject'])!r}")
    for t in _new(seen, "twilio", fakes["twilio"].messages()):
        _say("delivered", f"sms     via twilio to={t['to']} from={t['from']} body={t['body']!r}")
    for p in _new(seen, "push", fakes["fcm"].messages()):
        msg = p.get("message", p)
        _say(
            "delivered",
            f"push    token={msg.get('token')} title={msg.get('notification', {}).get('title')!r}",
        )
    for h in _new(seen, "webhook", fakes["webhook"].received):
        _say("delivered", f"webhook {'signature verified' if h['ok'] else 'REJECTED'} {h}")


async def _watch_providers(
    settings: HeraldSettings, fakes: dict[str, Any], pool: Any, stop: asyncio.Event
) -> None:
    """Print what the providers accepted (moto, the SMTP server, the fakes): the proof that
    deliveries happened, and through which provider."""
    import httpx

    seen: dict[str, int] = {}
    inbox = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            _show_ses_sns((await client.get(f"{settings.aws.endpoint_url}/moto-api/data.json")).json(), seen)
            _show_fakes(fakes, seen)
            rows = await pool.fetch(
                "SELECT user_id, title FROM herald_inbox ORDER BY created_at OFFSET $1", inbox
            )
            for r in rows:
                _say("delivered", f"in-app  user={r['user_id']} title={r['title']!r}")
            inbox += len(rows)
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass


def _raw_subject(raw: str) -> str:
    import email

    return str(email.message_from_string(raw).get("Subject", "")) if raw else ""


async def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, p in procs.items():
        try:
            await asyncio.to_thread(p.wait, max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say("stop", f"{name} did not stop in time: SIGKILL")
            p.kill()
            p.wait()


async def dev(_: HeraldSettings, args: argparse.Namespace) -> int:
    if args.print_env:  # what a second shell evals: it starts no client library
        sys.stdout.write(read_env_file(args.logs))
        return 0
    from consumers.devstack import DevStack
    from consumers.devstack.demo import STALE_TOKEN, new_webhook_secret, seed
    from consumers.devstack.fcm_fake import FcmFake
    from consumers.devstack.smtp_sink import SmtpSink
    from consumers.devstack.twilio_fake import TwilioFake
    from consumers.devstack.webhook_sink import WebhookSink
    from consumers.infra.db import connect_pool, migrate
    from consumers.runtime.kafka import create_topics

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the provider watcher polls every second
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per SMTP command
    logs: Path = args.logs
    await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
    secret = new_webhook_secret()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = asyncio.Event()
    smtp = SmtpSink(security="starttls", directory=logs)  # a submission server: STARTTLS required
    with DevStack() as stack, FcmFake() as fcm, smtp, TwilioFake() as twilio:
        sink = WebhookSink(secret).start()
        fakes: dict[str, Any] = {"fcm": fcm, "webhook": sink, "smtp": smtp, "twilio": twilio}
        try:
            fcm.fault("UNREGISTERED", count=-1, token=STALE_TOKEN)
            env = _demo_env(stack, fakes, logs)
            settings = load_settings()
            pool = await connect_pool(settings.database_url)
            await migrate(pool)
            await create_topics(settings, Topics(settings.topic_prefix).all())
            await seed(settings, pool, sink.url, secret)
            procs.update(_start_processes(env, logs))
            await _announce(settings, env, logs)
            tasks = _watchers(settings, args.interval, fakes, pool, stop)
            try:
                await _supervise(procs, args.duration)
            finally:
                stop.set()
                await _wind_down(tasks, procs, pool)
        finally:
            (logs / ENV_FILE).unlink(missing_ok=True)
            sink.stop()
    _say("stopped", json.dumps({name: p.returncode for name, p in procs.items()}))
    return 0


def _demo_env(stack: DevStack, fakes: dict[str, Any], logs: Path) -> dict[str, str]:
    """The environment every demo process gets (the stack's servers, the fakes, the demo's
    settings); also this process's own, so its settings point at the same servers."""
    from consumers.devstack.api_demo import demo_api_env

    fcm, smtp, twilio, sink = fakes["fcm"], fakes["smtp"], fakes["twilio"], fakes["webhook"]
    env = {
        **os.environ,
        **stack.env(),
        **DEMO_ENV,
        **demo_api_env(),
        **fcm.env(logs / "fcm-service-account.json"),
        **smtp.env(),
        **twilio.env(),
        **DEMO_PROVIDERS,
    }
    fcm.service_account(logs / "fcm-service-account.json")
    os.environ.update(
        {k: v for k, v in env.items() if k.startswith(("HERALD_", "KAFKA_", "DATABASE_", "REDIS_"))}
    )
    _say(
        "stack",
        f"up in {stack.started_in_s:.2f}s: kafka={stack.kafka} postgres={redact_url(stack.database_url)} "
        f"redis={redact_url(stack.redis_url)} moto={stack.moto_url} fcm={fcm.base_url} webhooks={sink.url} "
        f"smtp=127.0.0.1:{smtp.port} twilio={twilio.base_url}",
    )
    return env


def _watchers(
    settings: HeraldSettings, interval: float, fakes: dict[str, Any], pool: Any, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """The demo stream and what the console shows: outcomes, dead letters, what providers received."""
    from consumers.devstack.demo import run_demo_stream

    return [
        asyncio.create_task(run_demo_stream(settings, interval, stop)),
        asyncio.create_task(_watch_outcomes(settings, stop)),
        asyncio.create_task(_watch_dlq(settings, stop)),
        asyncio.create_task(_watch_providers(settings, fakes, pool, stop)),
    ]


async def _announce(settings: HeraldSettings, env: dict[str, str], logs: Path) -> None:
    """How to reach the running demo: the API, and the line for a second shell."""
    from consumers.devstack.api_demo import demo_access_lines

    for line in await demo_access_lines(settings):
        _say("api", line)
    console_url = await login_url(settings, "make-run")
    _say("console", f"operators' console: open {console_url} (a one-time login)")
    write_env_file(logs, env)
    for line in second_shell_hint(logs):
        _say("shell", line)
    _say(
        "providers",
        "email: ses, then smtp (bulk lane: smtp, then ses); sms: sns, then twilio (critical: twilio, "
        "then sns); each channel process's /metrics shows herald_provider_circuit_state",
    )
    _say("ready", "demo events follow; Ctrl-C stops everything")


async def _wind_down(
    tasks: list[asyncio.Task[None]], procs: dict[str, subprocess.Popen[bytes]], pool: Any
) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _stop_all(procs)
    await pool.close()


def _start_processes(env: dict[str, str], logs: Path) -> dict[str, subprocess.Popen[bytes]]:
    """Every Herald process of the demo, each with its own metrics port and log file."""
    from consumers.devstack.processes import free_port, spawn_herald

    procs = {}
    for name, argv in DEV_PROCESSES:
        port = free_port()
        log = logs / f"{name}.log"
        procs[name] = spawn_herald(argv, env={**env, "HERALD_METRICS_PORT": str(port)}, log=log)
        _say("process", f"{name:<15} pid={procs[name].pid} metrics=http://127.0.0.1:{port}/metrics log={log}")
    return procs


async def _supervise(procs: dict[str, subprocess.Popen[bytes]], duration: float | None) -> None:
    """Wait for Ctrl-C/SIGTERM or the duration; report a process that dies."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    deadline = None if duration is None else time.monotonic() + duration
    reported: set[str] = set()
    while not done.is_set() and (deadline is None or time.monotonic() < deadline):
        for name, p in procs.items():
            if p.poll() is not None and name not in reported:
                reported.add(name)
                _say("error", f"{name} exited with {p.returncode}; see its log")
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except TimeoutError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
