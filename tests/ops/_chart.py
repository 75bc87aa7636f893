"""Rendering helm/herald offline (Helm v4 embedded in helm-python-sdk) and validating what it renders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

from tests.ops._tools import REPO

__all__ = ["CHART", "KUBE_VERSION", "render", "validate"]

CHART = REPO / "helm" / "herald"
KUBE_VERSION = "1.29.0"
_SCHEMAS = Path(__file__).parent / "schemas"
# Custom resources: Kubernetes' own schemas do not know them; their CRDs' schemas do.
_CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}

helm_python.disable_logging()  # Helm logs each symlink it follows (files/ links into consumers/)


def render(
    values: Mapping[str, Any] | None = None, name: str = "herald", namespace: str = "notify"
) -> list[dict[str, Any]]:
    """Every manifest the chart renders (NOTES.txt and empty documents left out)."""
    chart = helm_python.Chart.load(CHART)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(chart.render(values=dict(values or {}), name=name, namespace=namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def validate(doc: dict[str, Any]) -> None:
    """Raise when ``doc`` is not a valid object of its kind (strict: unknown fields are errors)."""
    crd = _CRD_SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if crd is not None:
        schema = json.loads((_SCHEMAS / crd).read_text())
        jsonschema.Draft202012Validator(schema).validate(doc)
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
