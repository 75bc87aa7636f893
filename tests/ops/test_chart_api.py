"""The chart's `api` component: `herald run api` behind a Service, with its JWT key from a Secret.

Every manifest validates (kubernetes-validate, strict), then it is held against Herald: argparse
parses the args, HeraldSettings and the API's key loader accept the env (secret references resolved
the way the kubelet would), the Service reaches the port the API listens on. Last, the rendered
Deployment's env is run for real: `herald run api` against the dev stack answers /readyz on the
metrics port and a token signed with the Secret's key on the API port.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import helm_python
import httpx
import kubernetes_validate
import pytest
import uvicorn
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from consumers.api.auth import TokenKeys, mint_token
from consumers.cli.main import build_parser
from consumers.devstack import DevStack
from consumers.infra.settings import ApiSettings, HeraldSettings
from tests.ops._chart import CHART, render, validate

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT = render()
FULL = render({"api": {"ingress": {"enabled": True}, "autoscaling": {"enabled": True}}})
HS256_KEY = "k" * 32  # what the referenced Secret would hold


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(docs: list[dict[str, Any]], name: str = "herald-api") -> dict[str, Any]:
    (c,) = _kind(docs, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def _resolve(env: dict[str, dict[str, Any]], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it, from ``(secret, key) -> value``."""
    out = {}
    for name, var in env.items():
        if "value" in var:
            out[name] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            out[name] = secrets[(ref["name"], ref["key"])]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "doc",
    [d for d in FULL if d["metadata"]["labels"].get("app.kubernetes.io/component") == "api"],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_api_manifests_validate(doc: dict[str, Any]) -> None:
    validate(doc)


def test_api_objects_by_default_and_none_when_disabled() -> None:
    def api_kinds(docs: list[dict[str, Any]]) -> set[str]:
        return {d["kind"] for d in docs if d["metadata"]["name"] == "herald-api"}

    assert api_kinds(DEFAULT) == {"Deployment", "Service", "PodDisruptionBudget"}
    assert api_kinds(FULL) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Ingress",
        "HorizontalPodAutoscaler",
    }
    assert not api_kinds(render({"api": {"enabled": False}}))
    assert "herald-api" not in _kind(FULL, "ScaledObject"), "the API consumes no topic: no KEDA"
    assert _kind(DEFAULT, "Deployment")["herald-api"]["spec"]["replicas"] == VALUES["api"]["replicas"]


def test_api_args_parse_with_herald_cli() -> None:
    args = build_parser().parse_args(_container(DEFAULT)["args"])
    assert (args.command, args.process) == ("run", "api")


def test_api_env_is_accepted_by_settings_and_key_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(_container(DEFAULT))
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    secrets = {("herald-postgres", "url"): "postgresql://h@db/h", ("herald-redis", "url"): "redis://r/0"}
    secrets[("herald-api-jwt", "secret")] = HS256_KEY
    for name, value in _resolve(env, secrets).items():
        monkeypatch.setenv(name, value)
    settings = HeraldSettings()
    assert settings.api.port == VALUES["api"]["port"] == ApiSettings.model_fields["port"].default
    assert settings.api.jwt_algorithm == "HS256" and settings.api.jwt_audience == "herald-api"
    assert settings.api.jwt_secret is not None and settings.api.jwt_secret.get_secret_value() == HS256_KEY
    assert settings.metrics_port == VALUES["metrics"]["port"]
    assert TokenKeys.from_settings(settings.api).algorithm == "HS256"


def test_forwarded_peers_and_ses_feedback_topics_reach_uvicorn_and_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, neither variable is rendered (uvicorn's and Herald's defaults hold); set, uvicorn
    trusts the ingress's range and HeraldSettings reads the topic list."""
    env = _env(_container(DEFAULT))
    assert "FORWARDED_ALLOW_IPS" not in env and "HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS" not in env
    arns = ["arn:aws:sns:eu-west-1:123456789012:ses-feedback", "arn:aws:sns:us-east-1:123456789012:b"]
    docs = render({"api": {"forwardedAllowIps": "10.42.0.0/16", "sesFeedbackTopicArns": arns}})
    env = _env(_container(docs))
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "10.42.0.0/16"
    for name in list(os.environ):
        if name.startswith("HERALD_") or name == "FORWARDED_ALLOW_IPS":
            monkeypatch.delenv(name)
    secrets = {("herald-postgres", "url"): "postgresql://h@db/h", ("herald-redis", "url"): "redis://r/0"}
    secrets[("herald-api-jwt", "secret")] = HS256_KEY
    for name, value in _resolve(env, secrets).items():
        monkeypatch.setenv(name, value)
    assert HeraldSettings().providers.feedback.sns_topic_arns == arns
    assert uvicorn.Config(lambda *_: None).forwarded_allow_ips == "10.42.0.0/16"


def test_jwt_key_is_referenced_never_inlined() -> None:
    env = _env(_container(DEFAULT))
    assert env["HERALD_API__JWT_SECRET"] == {
        "name": "HERALD_API__JWT_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "herald-api-jwt", "key": "secret"}},
    }
    assert not any(d["kind"] == "Secret" for d in FULL), "the chart creates no Secret"
    for name in _kind(DEFAULT, "Deployment"):
        if name != "herald-api":
            assert not {k for k in _env(_container(DEFAULT, name)) if k.startswith("HERALD_API__")}, name
    with pytest.raises(helm_python.HelmError, match="never inline"):
        render({"env": {"HERALD_API__JWT_SECRET": HS256_KEY}})
    with pytest.raises(helm_python.HelmError, match=r"needs api\.jwt\.secretRef"):
        render({"api": {"jwt": {"secretRef": None}}})
    for incomplete in ("herald-api-jwt", {"name": "herald-api-jwt", "key": None}):
        with pytest.raises(helm_python.HelmError, match=r"must be \{name"):
            render({"api": {"jwt": {"secretRef": incomplete}}})
    with pytest.raises(helm_python.HelmError, match="HS256 or EdDSA"):
        render({"api": {"jwt": {"algorithm": "RS256"}}})
    with pytest.raises(helm_python.HelmError, match=r"needs api\.jwt\.publicKeyRef"):
        render({"api": {"jwt": {"algorithm": "EdDSA", "secretRef": None}}})


def test_eddsa_public_key_from_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(
        {
            "api": {
                "jwt": {
                    "algorithm": "EdDSA",
                    "secretRef": None,
                    "publicKeyRef": {"name": "herald-api-jwt", "key": "public.pem"},
                    "issuer": "https://idp.example.com",
                }
            }
        }
    )
    env = _env(_container(docs))
    assert "HERALD_API__JWT_SECRET" not in env
    assert env["HERALD_API__JWT_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "herald-api-jwt",
        "key": "public.pem",
    }
    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    secrets = {("herald-postgres", "url"): "x", ("herald-redis", "url"): "x"}
    secrets[("herald-api-jwt", "public.pem")] = pem.decode()
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    for name, value in _resolve(env, secrets).items():
        monkeypatch.setenv(name, value)
    api = HeraldSettings().api
    assert (api.jwt_algorithm, api.jwt_issuer) == ("EdDSA", "https://idp.example.com")
    keys = TokenKeys.from_settings(api)
    assert keys.algorithm == "EdDSA" and keys.signing_key is None


def test_service_and_ingress_reach_the_api_port() -> None:
    for values, port in (({}, 8080), ({"api": {"port": 9000, "ingress": {"enabled": True}}}, 9000)):
        docs = render(values)
        dep = _kind(docs, "Deployment")["herald-api"]
        c = _container(docs)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["http"] == int(_env(c)["HERALD_API__PORT"]["value"]) == port
        service = _kind(docs, "Service")["herald-api"]
        assert service["spec"]["type"] == "ClusterIP"
        (sp,) = service["spec"]["ports"]
        assert sp["targetPort"] == "http" and sp["port"] == VALUES["api"]["service"]["port"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        for name, other in _kind(docs, "Deployment").items():
            if name != "herald-api":
                other_labels = other["spec"]["template"]["metadata"]["labels"]
                assert not service["spec"]["selector"].items() <= other_labels.items(), (
                    f"{name} behind the API"
                )
    (rule,) = _kind(docs, "Ingress")["herald-api"]["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "herald-api", "port": {"name": "http"}}


def test_api_is_scraped_and_probed_like_every_process() -> None:
    dep = _kind(DEFAULT, "Deployment")["herald-api"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    metrics = _kind(DEFAULT, "Service")["herald-metrics"]
    monitor = _kind(DEFAULT, "ServiceMonitor")["herald"]
    assert metrics["spec"]["selector"].items() <= labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    api_service = _kind(DEFAULT, "Service")["herald-api"]
    assert (
        not monitor["spec"]["selector"]["matchLabels"].items() <= api_service["metadata"]["labels"].items()
    ), "scraped once, through the metrics Service"
    c = _container(DEFAULT)
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == VALUES["metrics"]["port"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    classifier = _container(DEFAULT, "herald-classifier")
    for key in ("securityContext", "volumeMounts", "image", "resources"):
        assert c[key] == classifier[key], key
    pod = dep["spec"]["template"]["spec"]
    assert (
        pod["securityContext"]
        == _kind(DEFAULT, "Deployment")["herald-classifier"]["spec"]["template"]["spec"]["securityContext"]
    )
    pdb = _kind(DEFAULT, "PodDisruptionBudget")["herald-api"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_graceful_termination_waits_out_the_pre_stop_sleep() -> None:
    pre_stop = VALUES["api"]["preStopSleepSeconds"]
    grace = VALUES["shutdownGraceSeconds"] + VALUES["terminationExtraSeconds"]
    c = _container(DEFAULT)
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(pre_stop)]
    dep = _kind(DEFAULT, "Deployment")["herald-api"]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace + pre_stop
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    docs = render({"api": {"preStopSleepSeconds": 0}})
    assert "lifecycle" not in _container(docs)
    assert (
        _kind(docs, "Deployment")["herald-api"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == grace
    )
    assert "lifecycle" not in _container(DEFAULT, "herald-classifier")


def test_optional_cpu_autoscaling_owns_replicas() -> None:
    hpa = _kind(FULL, "HorizontalPodAutoscaler")["herald-api"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "herald-api"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in _kind(FULL, "Deployment")["herald-api"]["spec"]
    with pytest.raises(helm_python.HelmError, match="minReplicas > maxReplicas"):
        render({"api": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}})


def test_ingress_tls_and_class() -> None:
    docs = render(
        {
            "api": {
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
                    "tls": [{"secretName": "herald-api-tls", "hosts": ["api.example.com"]}],
                    "hosts": [{"host": "api.example.com", "paths": [{"path": "/v1", "pathType": "Prefix"}]}],
                }
            }
        }
    )
    ingress = _kind(docs, "Ingress")["herald-api"]
    validate(ingress)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "herald-api-tls"
    assert ingress["spec"]["rules"][0]["host"] == "api.example.com"
    broken = copy.deepcopy(ingress)
    broken["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


async def _wait_status(url: str, proc: asyncio.subprocess.Process, status: int, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"herald run api exited with {proc.returncode}")
            try:
                if (await client.get(url)).status_code == status:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {within}s")


async def test_rendered_api_deployment_runs(stack: DevStack, pg_pool: object, tmp_path: Path) -> None:
    """The Deployment's args and env, with the Secrets and the routing ConfigMap as the kubelet gives them."""
    c = _container(DEFAULT)
    routing = tmp_path / "routing.yaml"
    routing.write_text(_kind(DEFAULT, "ConfigMap")["herald-routing"]["data"]["routing.yaml"])
    secrets = {
        ("herald-postgres", "url"): stack.database_url,
        ("herald-redis", "url"): stack.redis_url,
        ("herald-api-jwt", "secret"): HS256_KEY,
    }
    metrics_port, api_port = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_")},
        **_resolve(_env(c), secrets),
        # Only what differs between a pod and this machine: addresses, ports, the mount path.
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "HERALD_TOPIC_PREFIX": f"chartapi{os.getpid()}",
        "HERALD_PARTITIONS": "1",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_METRICS_PORT": str(metrics_port),
        "HERALD_API__HOST": "127.0.0.1",
        "HERALD_API__PORT": str(api_port),
        "HERALD_CLASSIFIER__ROUTING_FILE": str(routing),
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "herald"),
            *c["args"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_status(f"http://127.0.0.1:{metrics_port}/readyz", proc, 200, 60)
        await _wait_status(f"http://127.0.0.1:{api_port}/v1/inbox/unread-count", proc, 401, 10)
        settings = ApiSettings(jwt_secret=SecretStr(HS256_KEY))
        token = mint_token(TokenKeys.from_settings(settings), settings, "chart-user", now=datetime.now(UTC))
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(
                f"http://127.0.0.1:{api_port}/v1/inbox/unread-count",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200 and answer.json() == {"unread": 0}, answer.text
            assert "herald_" in (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]
