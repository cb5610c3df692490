"""Kubernetes manifests as the tests see them: rendered by kubectl's kustomize, validated against
Kubernetes' schemas (kubernetes-validate) and the Knative and KEDA CRDs (tests/fixtures/crds), and
walked pod by pod."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from .paths import REPO

K8S = REPO / "infra" / "k8s"
CRDS = REPO / "tests" / "fixtures" / "crds"
KUBECTL = shutil.which("kubectl")
ROOTS = {"gpu": K8S, "cpu": K8S / "overlays" / "cpu"}
Obj = dict[str, Any]


def render(root: Path) -> list[Obj]:
    """`kubectl kustomize ROOT`, as objects."""
    out = subprocess.run([str(KUBECTL), "kustomize", str(root)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the CRD's openAPIV3Schema."""
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def validate(objects: list[Obj]) -> set[str]:
    """Validate every object (CRD kinds by their schema, the rest by Kubernetes'); the kinds seen."""
    crds = crd_schemas()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in crds:
            jsonschema.validate(obj, crds[key])
        else:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
    return {o["kind"] for o in objects}


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    """The one object of `kind` named `name`."""
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def pods(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod spec) of every Deployment, Job and Knative Service."""
    for obj in objects:
        template = obj.get("spec", {}).get("template", {})
        if obj["kind"] in ("Deployment", "Job", "Service") and "spec" in template:
            yield obj, template["spec"]


def env(container: Obj) -> dict[str, Obj]:
    """A container's variables by name (each as written: value or valueFrom)."""
    return {v["name"]: v for v in container.get("env", [])}


def secret_names(pod: Obj) -> set[str]:
    """Every Secret a pod reads: variables and volumes."""
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for c in pod["containers"]:
        for var in c.get("env", []):
            if ref := var.get("valueFrom", {}).get("secretKeyRef"):
                names.add(ref["name"])
        names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    return names
