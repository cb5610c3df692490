"""infra/k8s renders (kustomize) and every object validates: core kinds against Kubernetes' schemas
(kubernetes-validate), Knative and KEDA kinds against their CRDs (tests/fixtures/crds)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fermion.events import streams
from tests.helpers.manifests import K8S, KUBECTL, ROOTS, one, render, validate

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (its built-in kustomize renders the manifests)"),
]


@pytest.fixture(scope="module", params=sorted(ROOTS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(ROOTS[request.param])


def test_every_object_validates(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    kinds = validate(objects)
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
    scaled = one(objects, "ScaledObject", "trainers")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "trainers"
    assert scaled["spec"]["minReplicaCount"] == 0
    trigger = next(t for t in scaled["spec"]["triggers"] if t["metadata"]["consumer"] == streams.TRAINER_DURABLE)
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == streams.JOBS_STREAM
    auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    secret = one(objects, "Secret", auth["spec"]["secretTargetRef"][0]["name"])
    assert secret["stringData"]["endpoint"].endswith(":8222")
    [trainer] = one(objects, "Deployment", "trainers")["spec"]["template"]["spec"]["containers"]
    assert (trainer["resources"]["limits"].get("nvidia.com/gpu") == "1") == (variant == "gpu")
    assert trainer["image"].endswith("-cuda") == (variant == "gpu")
    one(objects, "Job", "provision-streams")  # the consumer exists before anything can be pending
    # KEDA never targets what Knative scales.
    assert not any(o["kind"] == "Deployment" and o["metadata"]["name"] == "inference" for o in objects)


def test_only_fermions_units_reach_nats(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    policy = one(objects, "NetworkPolicy", "nats-clients-only")
    client_rule = next(r for r in policy["spec"]["ingress"] if {"port": 4222} in r["ports"])
    [peer] = client_rule["from"]
    ((label, value),) = peer["podSelector"]["matchLabels"].items()
    labelled = set()
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {})
        if pod.get("metadata", {}).get("labels", {}).get(label) == value:
            labelled.add(obj["metadata"]["name"])
    # Issue 24: the monitor and the federation coordinator are deployed, and inference sends the
    # monitor its telemetry, each as its own NATS user.
    assert labelled == {"ingest", "trainers", "provision-streams", "monitor", "federated", "inference"}


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
    assert any(o["metadata"]["name"] == "extra" for o in render(root))
