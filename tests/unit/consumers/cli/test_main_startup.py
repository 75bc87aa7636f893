"""``herald --help`` and ``herald settings`` import no client library; ``herald run`` imports
its clients only inside ``run_process``, after the parser and the settings.

Reading settings and building the parser are what every CLI command and every ``herald run``
pays before doing anything; with the AWS, Kafka, PostgreSQL, Redis, HTTP and template clients
loaded at the top it cost ~3.9 s of CPU (0.6 s without). A command imports its clients inside
its handler; a ``*Settings`` model lives apart from its client (e.g. channels/aws_settings.py).
Each probe runs in a fresh interpreter: this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]

# Client libraries and frameworks a command needs only once it runs.
HEAVY = frozenset(
    {
        "aioboto3",
        "aiobotocore",
        "boto3",
        "botocore",
        "aiokafka",
        "asyncpg",
        "redis",
        "jinja2",
        "httpx",
        "aiohttp",
        "fastapi",
        "starlette",
        "uvicorn",
        "prometheus_client",
        "aiosmtplib",
        "fastavro",
        "yaml",
        "rich",
    }
)

_REPORT = "import json, sys; print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"

_HELP = """
import argparse
from consumers.cli.main import build_parser
parser = build_parser()
parser.format_help()
for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
        for command in action.choices.values():
            command.format_help()
"""

_SETTINGS = """
from consumers.cli.commands import settings_table
from consumers.infra.settings import load_settings
load_settings()
settings_table(markdown=True)
"""


# What `eval "$(herald dev --print-env)"` runs in the demo's second shell (no demo here: refused).
_PRINT_ENV = """
import argparse, asyncio, pathlib, tempfile
from consumers.cli.dev import dev
from consumers.infra.settings import load_settings
from schemas.errors import ConfigurationError
try:
    asyncio.run(dev(load_settings(), argparse.Namespace(print_env=True, logs=pathlib.Path(tempfile.mkdtemp()))))
except ConfigurationError:
    pass
"""


def _loaded(code: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_REPORT}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import consumers.infra.settings",
        "import consumers.cli.main",
        _HELP,
        _SETTINGS,
        _PRINT_ENV,
    ],
    ids=["settings", "cli-main", "every-help", "settings-markdown", "dev-print-env"],
)
def test_start_up_imports_no_client(code: str) -> None:
    assert _loaded(code) & HEAVY == set()


def test_the_probe_sees_a_client_import() -> None:
    # The check above is only as good as this: importing an adapter does load its client.
    assert {"aioboto3", "botocore"} <= _loaded("import channels.aws")
