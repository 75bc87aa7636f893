"""helm/herald renders (Helm v4 via helm-python-sdk), lints, and every manifest validates.

Kubernetes objects are validated by kubernetes-validate against the 1.29 schemas (strict); KEDA's
ScaledObject and the Prometheus Operator's ServiceMonitor against schemas from their CRDs
(tests/ops/schemas/). Then the manifests are checked against Herald itself: the CLI parses every
container's args, the settings accept every HERALD_* variable, topics and consumer groups are the
ones the code uses.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from consumers.channel.process import group_id
from consumers.cli.dev import DEV_PROCESSES
from consumers.cli.main import build_parser
from consumers.cli.run import PROCESSES
from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.models import Channel, Lane
from tests.ops._chart import CHART, render, validate
from tests.ops._tools import REPO

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT = render()


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def _setting_env_names(model: type[BaseModel], prefix: str = "HERALD_") -> set[str]:
    names = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        names.add(name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= _setting_env_names(info.annotation, name + "__")
    return names


def test_chart_lints_clean_in_strict_mode() -> None:
    report = helm_python.lint(CHART, strict=True)
    # Helm's severities: 1 info ("icon is recommended"), 2 warning, 4 error; strict fails on warnings.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["total_charts_linted"] == 1 and not report["errors"] and not problems, report


@pytest.mark.parametrize("doc", DEFAULT, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_rendered_manifest_validates(doc: dict[str, Any]) -> None:
    validate(doc)


def test_validators_reject_broken_manifests() -> None:
    """The validation above can fail: the kinds of mistake it must catch."""
    deployment = copy.deepcopy(next(iter(_kind(DEFAULT, "Deployment").values())))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(next(iter(_kind(DEFAULT, "ScaledObject").values())))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(next(iter(_kind(DEFAULT, "ScaledObject").values())))
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    monitor = copy.deepcopy(next(iter(_kind(DEFAULT, "ServiceMonitor").values())))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_one_deployment_per_process_and_channel_lane() -> None:
    components = {_component(d) for d in _kind(DEFAULT, "Deployment").values()}
    channels = {
        f"channel-{c.replace('_', '-')}-{lane}"
        for c, lanes in VALUES["channels"].items()
        for lane, cfg in lanes.items()
        if cfg.get("enabled")
    }
    fixed = {
        "classifier",
        "classifier-bulk",
        "fanout",
        "fallback",
        "scheduler",
        "inbox-janitor",
        "ledger",
        "api",
    }
    assert components == fixed | channels
    assert "channel-email-bulk" in components and "channel-in-app-priority" in components


def test_the_chart_runs_every_process_make_run_runs() -> None:
    """What `make run` needs to work end to end (topic broadcasts included) a chart install has too."""
    commands = {
        tuple(a for a in c["args"] if a not in {"--workers", "1"})
        for dep in _kind(DEFAULT, "Deployment").values()
        for c in dep["spec"]["template"]["spec"]["containers"]
    }
    for name, argv in DEV_PROCESSES:
        assert ("run", *argv) in commands, name


def test_containers_run_real_herald_commands() -> None:
    parser = build_parser()
    for name, dep in _kind(DEFAULT, "Deployment").items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        args = parser.parse_args(container["args"])
        assert args.command == "run" and args.process in PROCESSES, name
        if args.process == "channel":
            assert Channel(args.channel) and Lane(args.lane)
            assert _component(dep) == f"channel-{args.channel.replace('_', '-')}-{args.lane}"
    job = next(iter(_kind(DEFAULT, "Job").values()))
    pod = job["spec"]["template"]["spec"]
    commands = [c["args"] for c in pod.get("initContainers", []) + pod["containers"]]
    assert commands == [["migrate"], ["topics", "create"]]
    for command in commands:
        assert parser.parse_args(command).command == command[0]


def test_scaled_object_per_channel_consumer_on_its_own_topic_and_group() -> None:
    deployments = _kind(DEFAULT, "Deployment")
    scaled = _kind(DEFAULT, "ScaledObject")
    channel_deps = {n for n, d in deployments.items() if _component(d).startswith("channel-")}
    assert set(scaled) == channel_deps
    topics = Topics(VALUES["topicPrefix"])
    for name, so in scaled.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(container["args"])
        channel, lane = Channel(args.channel), Lane(args.lane)
        cfg = {**VALUES["channelDefaults"], **VALUES["channels"][channel.value][lane.value]}
        assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert "replicas" not in deployments[name]["spec"], "the HPA owns replicas of a scaled Deployment"
        assert so["spec"]["minReplicaCount"] == cfg["minReplicas"]
        assert so["spec"]["maxReplicaCount"] == cfg["maxReplicas"] <= VALUES["kafka"]["partitions"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["topic"] == topics.channel(channel, lane)
        assert meta["consumerGroup"] == group_id(channel, lane)
        assert meta["lagThreshold"] == str(cfg["lagThreshold"])
        assert meta["bootstrapServers"] == VALUES["kafka"]["bootstrapServers"]
    assert scaled["herald-channel-email-bulk"]["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "5000"


def test_probes_security_and_graceful_termination() -> None:
    uid = int(re.search(r"^USER (\d+)", (REPO / "Dockerfile").read_text(), re.M).group(1))  # type: ignore[union-attr]
    for name, dep in _kind(DEFAULT, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
        env = _env(c)
        assert port == int(env["HERALD_METRICS_PORT"]["value"])
        assert port == HeraldSettings.model_fields["metrics_port"].default
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        sec = c["securityContext"]
        assert sec["runAsNonRoot"] and sec["readOnlyRootFilesystem"]
        assert sec["allowPrivilegeEscalation"] is False
        assert sec["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], "read-only root needs a /tmp"
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        grace = float(env["HERALD_RUNTIME__SHUTDOWN_GRACE_S"]["value"])
        assert pod["terminationGracePeriodSeconds"] > grace, name


def test_grace_follows_the_shutdown_setting() -> None:
    docs = render({"shutdownGraceSeconds": 45.5, "terminationExtraSeconds": 5})
    for dep in _kind(docs, "Deployment").values():
        # The API also waits out its preStop sleep (tests/ops/test_chart_api.py).
        pre_stop = VALUES["api"]["preStopSleepSeconds"] if _component(dep) == "api" else 0
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 51 + pre_stop
    with pytest.raises(helm_python.HelmError, match="terminationExtraSeconds"):
        render({"terminationExtraSeconds": 0})


def test_env_is_settings_herald_understands(monkeypatch: pytest.MonkeyPatch) -> None:
    known = _setting_env_names(HeraldSettings) | {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"}
    deployments = _kind(DEFAULT, "Deployment")
    for name, dep in deployments.items():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        env = _env(c)
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "herald-postgres", "key": "url"}
        assert "REDIS_URL" in env and "value" not in env["REDIS_URL"]
    push = _env(deployments["herald-channel-push-priority"]["spec"]["template"]["spec"]["containers"][0])
    email = _env(deployments["herald-channel-email-priority"]["spec"]["template"]["spec"]["containers"][0])
    classifier = _env(deployments["herald-classifier"]["spec"]["template"]["spec"]["containers"][0])
    assert push["HERALD_PUSH__SERVICE_ACCOUNT_JSON"]["valueFrom"]["secretKeyRef"]["name"] == "herald-fcm"
    assert "HERALD_PUSH__SERVICE_ACCOUNT_JSON" not in email and "HERALD_AWS__SECRET_ACCESS_KEY" in email
    assert not {k for k in classifier if k.startswith(("HERALD_AWS", "HERALD_PUSH"))}, "least privilege"
    for key, var in push.items():
        if "value" in var:
            monkeypatch.setenv(key, var["value"])
    settings = HeraldSettings()
    assert settings.runtime.shutdown_grace_s == VALUES["shutdownGraceSeconds"]
    assert settings.classifier.routing_file == Path("/etc/herald/routing/routing.yaml")
    assert settings.templates_dir == Path("/etc/herald/templates")
    assert settings.kafka_bootstrap_servers == VALUES["kafka"]["bootstrapServers"]


def test_tenant_token_keys_reach_the_api_only_from_their_secret() -> None:
    assert "HERALD_API__JWT_TENANT_KEYS" not in _env(
        _kind(DEFAULT, "Deployment")["herald-api"]["spec"]["template"]["spec"]["containers"][0]
    )
    ref = {"name": "herald-tenant-keys", "key": "keys.json"}
    values = copy.deepcopy(VALUES)
    values["api"]["jwt"]["tenantKeysRef"] = ref
    deployments = _kind(render(values), "Deployment")
    for name, dep in deployments.items():
        env = _env(dep["spec"]["template"]["spec"]["containers"][0])
        if name == "herald-api":
            assert env["HERALD_API__JWT_TENANT_KEYS"] == {
                "name": "HERALD_API__JWT_TENANT_KEYS",
                "valueFrom": {"secretKeyRef": ref},
            }
        else:
            assert "HERALD_API__JWT_TENANT_KEYS" not in env, name


def test_routing_and_templates_come_from_config_maps() -> None:
    maps = _kind(DEFAULT, "ConfigMap")
    routing = maps["herald-routing"]["data"]["routing.yaml"]
    assert yaml.safe_load(routing) == yaml.safe_load((REPO / "consumers" / "routing.yaml").read_text())
    templates_dir = REPO / "consumers" / "templates"
    shipped = {
        p.relative_to(templates_dir).as_posix(): p.read_text()
        for p in templates_dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped
    data = maps["herald-templates"]["data"]
    deployments = _kind(DEFAULT, "Deployment")
    pod = deployments["herald-channel-email-priority"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "templates"]
    mounted = {item["path"]: data[item["key"]] for item in volume["configMap"]["items"]}
    assert mounted == shipped
    (c,) = pod["containers"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "templates")
    assert mount["mountPath"] == _env(c)["HERALD_TEMPLATES_DIR"]["value"]
    classifier = deployments["herald-classifier"]["spec"]["template"]["spec"]
    assert {v["name"] for v in classifier["volumes"]} == {"tmp", "routing"}


def test_template_and_routing_overrides() -> None:
    docs = render(
        {
            "routing": {"override": "routes: []\n"},
            "templates": {"overrides": {"security_alert/en/sms.txt.j2": "ALERT {{ device }}"}},
        }
    )
    maps = _kind(docs, "ConfigMap")
    assert maps["herald-routing"]["data"]["routing.yaml"].strip() == "routes: []"
    assert maps["herald-templates"]["data"]["security_alert__en__sms.txt.j2"] == "ALERT {{ device }}"


def test_service_monitor_scrapes_every_pod_and_pdbs_cover_every_deployment() -> None:
    service = _kind(DEFAULT, "Service")["herald-metrics"]
    (monitor,) = _kind(DEFAULT, "ServiceMonitor").values()
    assert service["spec"]["clusterIP"] == "None"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    pdbs = _kind(DEFAULT, "PodDisruptionBudget")
    for name, dep in _kind(DEFAULT, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), f"{name} is not scraped"
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        assert pdbs[name]["spec"]["maxUnavailable"] == 1


def test_values_choose_the_lanes_and_their_scaling() -> None:
    docs = render(
        {
            "channels": {
                "sms": {"bulk": {"enabled": True, "maxReplicas": 3, "lagThreshold": 777}},
                "webhook": {"priority": {"enabled": False}},
            },
            "serviceMonitor": {"enabled": False},
            "kafka": {"triggerAuthentication": "kafka-sasl"},
        }
    )
    for doc in docs:
        validate(doc)
    scaled = _kind(docs, "ScaledObject")
    assert "herald-channel-webhook-priority" not in scaled and "herald-channel-webhook-priority" not in _kind(
        docs, "Deployment"
    )
    sms = scaled["herald-channel-sms-bulk"]["spec"]
    assert (sms["minReplicaCount"], sms["maxReplicaCount"]) == (1, 3)
    assert sms["triggers"][0]["metadata"]["lagThreshold"] == "777"
    assert sms["triggers"][0]["metadata"]["topic"] == "herald.channel.sms.bulk"
    assert sms["triggers"][0]["authenticationRef"] == {"name": "kafka-sasl"}
    assert not _kind(docs, "ServiceMonitor")


def _pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = _kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
    return spec


def _cpu_m(pod: dict[str, Any]) -> int:
    cpu = str(pod["containers"][0]["resources"]["requests"]["cpu"])
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def test_the_bulk_lane_yields_the_cpu_to_the_priority_lane() -> None:
    # By default: a lower CPU request (a lower cgroup weight where both share a node's CPU).
    assert _cpu_m(_pod(DEFAULT, "herald-channel-email-bulk")) * 4 <= _cpu_m(
        _pod(DEFAULT, "herald-channel-email-priority")
    )
    docs = render(
        {
            "lanes": {"bulk": {"priorityClassName": "herald-bulk"}},
            "channels": {
                "sms": {"bulk": {"enabled": True}},
                "email": {"bulk": {"resources": {"requests": {"cpu": "200m"}}}},
            },
            "processes": {"classifier": {"priorityClassName": "herald-critical"}},
        }
    )
    for doc in docs:
        validate(doc)
    sms_bulk = _pod(docs, "herald-channel-sms-bulk")
    assert sms_bulk["priorityClassName"] == "herald-bulk"
    assert _cpu_m(sms_bulk) == 25  # the lane's default reaches every channel's bulk lane
    assert _cpu_m(_pod(docs, "herald-channel-email-bulk")) == 200  # a channel's own entry wins
    assert _pod(docs, "herald-classifier")["priorityClassName"] == "herald-critical"
    for name in ("herald-channel-email-priority", "herald-fallback"):
        assert "priorityClassName" not in _pod(docs, name)  # empty: the cluster's default


def test_chart_refuses_more_replicas_than_partitions() -> None:
    with pytest.raises(helm_python.HelmError, match=r"exceeds kafka\.partitions"):
        render({"channels": {"push": {"priority": {"maxReplicas": 50}}}})
    with pytest.raises(helm_python.HelmError, match="lane must be priority or bulk"):
        render({"channels": {"push": {"urgent": {"enabled": True}}}})


def test_workers_per_pod_reach_the_command_and_count_against_partitions() -> None:
    docs = render(
        {
            "channels": {"push": {"priority": {"workers": 2, "maxReplicas": 4}}},
            "processes": {"classifier": {"workers": 3}},
        }
    )
    deployments = _kind(docs, "Deployment")
    args = deployments["herald-channel-push-priority"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--workers", "2"]
    classifier = deployments["herald-classifier"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert classifier == ["run", "classifier", "--workers", "3"]
    email = deployments["herald-channel-email-priority"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--workers" not in email  # one worker: the plain command
    assert "workers" not in str(_kind(docs, "ScaledObject")["herald-channel-push-priority"]["spec"])
    with pytest.raises(helm_python.HelmError, match=r"maxReplicas × workers"):
        render({"channels": {"push": {"priority": {"workers": 4, "maxReplicas": 6}}}})
