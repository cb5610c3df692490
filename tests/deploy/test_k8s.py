"""infra/k8s renders (kustomize) and every object validates: core kinds against Kubernetes' schemas
(kubernetes-validate), Knative and KEDA kinds against their CRDs (tests/fixtures/crds)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fermion.events import streams

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
CRDS = REPO / "tests" / "fixtures" / "crds"
KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (its built-in kustomize renders the manifests)"),
]
ROOTS = {"gpu": K8S, "cpu": K8S / "overlays" / "cpu"}


def _render(root: Path) -> list[dict[str, Any]]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(root)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.fixture(scope="module", params=sorted(ROOTS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _render(ROOTS[request.param])


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_every_object_validates(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    crds = _crd_schemas()
    kinds = set()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        kinds.add(obj["kind"])
        if key in crds:
            jsonschema.validate(obj, crds[key])
        else:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
    assert {"Service", "ScaledObject", "TriggerAuthentication", "Deployment", "NetworkPolicy", "Secret"} <= kinds


def test_inference_is_a_knative_service_that_scales_to_zero(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    variant, objects = rendered
    [ksvc] = [o for o in objects if o["apiVersion"].startswith("serving.knative.dev")]
    template = ksvc["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["autoscaling.knative.dev/min-scale"] == "0"
    assert "autoscaling.knative.dev/initial-scale" in notes
    assert "autoscaling.knative.dev/scale-to-zero-pod-retention-period" in notes
    [container] = template["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert any(m["mountPath"] == "/var/lib/fermion" for m in container["volumeMounts"])
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (gpus == "1") == (variant == "gpu")
    assert container["image"].endswith(f"fermion-inference-{variant}:0.1.0")


def test_trainers_scale_from_zero_on_the_trainers_consumer(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    variant, objects = rendered
    scaled = _one(objects, "ScaledObject", "trainers")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "trainers"
    assert scaled["spec"]["minReplicaCount"] == 0
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == streams.JOBS_STREAM
    assert trigger["metadata"]["consumer"] == streams.TRAINER_DURABLE
    auth = _one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    secret = _one(objects, "Secret", auth["spec"]["secretTargetRef"][0]["name"])
    assert secret["stringData"]["endpoint"].endswith(":8222")
    [trainer] = _one(objects, "Deployment", "trainers")["spec"]["template"]["spec"]["containers"]
    assert (trainer["resources"]["limits"].get("nvidia.com/gpu") == "1") == (variant == "gpu")
    assert trainer["image"].endswith("-cuda") == (variant == "gpu")
    _one(objects, "Job", "provision-streams")  # the consumer exists before anything can be pending
    # KEDA never targets what Knative scales.
    assert not any(o["kind"] == "Deployment" and o["metadata"]["name"] == "inference" for o in objects)


def test_only_ingest_and_trainers_reach_nats(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    policy = _one(objects, "NetworkPolicy", "nats-clients-only")
    client_rule = next(r for r in policy["spec"]["ingress"] if {"port": 4222} in r["ports"])
    [peer] = client_rule["from"]
    ((label, value),) = peer["podSelector"]["matchLabels"].items()
    labelled = set()
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {})
        if pod.get("metadata", {}).get("labels", {}).get(label) == value:
            labelled.add(obj["metadata"]["name"])
    assert labelled == {"ingest", "trainers", "provision-streams"}


def test_nats_values_ask_for_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert values["config"]["monitor"]["port"] == 8222


def test_a_new_component_directory_can_be_listed_in_the_root(tmp_path: Path) -> None:
    """Issue 20 (distributed training) adds a component: the root's layout takes one more line."""
    root = tmp_path / "k8s"
    shutil.copytree(K8S, root)
    extra = root / "components" / "extra"
    extra.mkdir()
    (extra / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [cm.yaml]\n"
    )
    (extra / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: fermion}\n")
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    kustomization["components"].append("components/extra")
    (root / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    assert any(o["metadata"]["name"] == "extra" for o in _render(root))
