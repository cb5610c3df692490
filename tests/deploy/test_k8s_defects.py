"""Issue 24's Kubernetes defects, each checked on the manifests as kustomize renders infra/k8s (both
overlays): what a stock cluster's webhooks and schedulers would refuse, and what would leave a
deployment unable to serve a trained model."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from fermion.events import streams
from tests.helpers.manifests import K8S, KUBECTL, ROOTS, env, one, pods, render, secret_names

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (its built-in kustomize renders the manifests)"),
]
Objects = list[dict[str, Any]]
# Knative Serving's pod-spec feature flags (config-features), by the field each one lets through.
KNATIVE_FLAGS = {
    "affinity": "kubernetes.podspec-affinity",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}
REAL_FLAGS = {
    *KNATIVE_FLAGS.values(),
    "kubernetes.podspec-fieldref",
    "kubernetes.podspec-dryrun",
    "kubernetes.podspec-volumes-emptydir",
    "kubernetes.podspec-volumes-hostpath",
    "kubernetes.podspec-volumes-mount-propagation",
    "kubernetes.podspec-persistent-volume-claim",
    "kubernetes.podspec-persistent-volume-write",
    "kubernetes.podspec-hostnetwork",
    "kubernetes.podspec-hostipc",
    "kubernetes.podspec-hostpid",
    "kubernetes.podspec-shareprocessnamespace",
}
TRAINER_CONSUMERS = set(streams.TRAINER_CONSUMERS)  # what the trainer prepares and serves (worker.py)


@pytest.fixture(scope="module", params=sorted(ROOTS))
def objects(request: pytest.FixtureRequest) -> Objects:
    return render(ROOTS[request.param])


def _container(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    [container] = one(objects, kind, name)["spec"]["template"]["spec"]["containers"]
    return container


def test_knative_pod_fields_have_their_feature_flags_shipped(objects: Objects) -> None:
    path = K8S / "knative" / "config-features.yaml"
    assert path.is_file(), "the config-features patch that turns on Knative's pod-spec flags"
    features = yaml.safe_load(path.read_text())
    assert (features["kind"], features["metadata"]["name"], features["metadata"]["namespace"]) == (
        "ConfigMap",
        "config-features",
        "knative-serving",
    )
    [ksvc] = [o for o in objects if o["apiVersion"].startswith("serving.knative.dev")]
    used = [f for f in ksvc["spec"]["template"]["spec"] if f in KNATIVE_FLAGS]
    assert "securityContext" in used
    for field in used:
        assert features["data"].get(KNATIVE_FLAGS[field]) == "enabled", field


def test_manifests_name_only_knative_flags_that_exist() -> None:
    named = set()
    for path in K8S.rglob("*.yaml"):
        named |= set(re.findall(r"kubernetes\.podspec-[a-z-]*[a-z]", path.read_text()))
    assert named, "the flags are named where they are needed"
    assert named <= REAL_FLAGS, named - REAL_FLAGS


def test_gpu_pods_schedule_with_the_device_plugin_alone(objects: Objects) -> None:
    """`nvidia.com/gpu.present` is GPU Feature Discovery's label: the resource limit alone schedules."""
    gpu_pods = 0
    for _, pod in pods(objects):
        selector = pod.get("nodeSelector", {})
        assert not any(k.startswith(("nvidia.com/", "feature.node.kubernetes.io/")) for k in selector), selector
        gpu_pods += any(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu") for c in pod["containers"])
    assert gpu_pods == (2 if _is_gpu(objects) else 0)  # GPU inference and the GPU trainers


def _is_gpu(objects: Objects) -> bool:
    return any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == "fermion-rank-job" for o in objects)


def test_an_apply_never_overwrites_a_credential(objects: Objects) -> None:
    """The platform's kustomization holds no Secret a unit reads its credentials from."""
    read = set().union(*(secret_names(pod) for _, pod in pods(objects)))
    shipped = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert read, "the units read their credentials from Secrets"
    assert not read & shipped, read & shipped
    assert shipped <= {"fermion-nats-monitoring"}  # KEDA's address of NATS's monitoring port: no credential


def test_streams_have_as_many_replicas_as_the_jetstream_cluster(objects: Objects) -> None:
    nats = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    config = one(objects, "ConfigMap", "fermion")["data"]
    provision = _container(objects, "Job", "provision-streams")
    assert {"configMapRef": {"name": "fermion"}} in provision["envFrom"]
    assert int(config["FERMION_STREAM_REPLICAS"]) == nats["config"]["cluster"]["replicas"] == 3


def _triggers(objects: Objects, target: str) -> set[tuple[str, str]]:
    [scaled] = [o for o in objects if o["kind"] == "ScaledObject" and o["spec"]["scaleTargetRef"]["name"] == target]
    return {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in scaled["spec"]["triggers"]}


def test_keda_scales_trainers_on_every_consumer_they_serve(objects: Objects) -> None:
    assert _triggers(objects, "trainers") == TRAINER_CONSUMERS
    assert _triggers(objects, "federated") == {(streams.JOBS_STREAM, streams.FEDERATION_DURABLE)}


def test_the_monitor_and_the_federation_coordinator_are_deployed(objects: Objects) -> None:
    assert _container(objects, "Deployment", "monitor")["command"] == ["python", "-m", "fermion.functions.monitor"]
    assert _container(objects, "Deployment", "federated")["command"] == ["python", "-m", "fermion.functions.federated"]
    assert one(objects, "Deployment", "monitor")["spec"]["replicas"] == 1  # telemetry is not kept: always on


def test_no_keda_scaled_deployment_sets_its_replicas(objects: Objects) -> None:
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "ScaledObject"}
    assert {"trainers", "federated"} <= scaled
    for name in scaled:
        assert "replicas" not in one(objects, "Deployment", name)["spec"], name


def test_the_rank_launcher_may_read_its_jobs_status() -> None:
    objects = render(ROOTS["gpu"])
    role = one(objects, "Role", "fermion-rank-jobs")
    allowed = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("jobs/status", "get") in allowed  # read_namespaced_job_status
    assert ("jobs", "create") in allowed


def test_rank_jobs_run_the_trainers_image_as_kustomize_set_it() -> None:
    objects = render(ROOTS["gpu"])
    trainer = _container(objects, "Deployment", "trainers")
    assert trainer["env"] and env(trainer)["FERMION_RANK_IMAGE"]["value"] == trainer["image"]
    assert "/" in trainer["image"]  # rewritten by the images list, not the bare name


def test_ingest_is_ready_only_when_its_dependencies_are(objects: Objects) -> None:
    ingest = _container(objects, "Deployment", "ingest")
    assert ingest["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ingest["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_ingest_is_reached_through_an_ingress_with_tls(objects: Objects) -> None:
    ingress = one(objects, "Ingress", "ingest")
    [tls] = ingress["spec"]["tls"]
    [rule] = ingress["spec"]["rules"]
    assert tls["secretName"] and tls["hosts"] == [rule["host"]]
    assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"]["name"] == one(objects, "Service", "ingest")["metadata"]["name"]


def test_every_pod_runs_as_its_roles_own_service_account(objects: Objects) -> None:
    """Workload identity binds a ServiceAccount, never the node: no pod may use `default`."""
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    used = {}
    for workload, pod in pods(objects):
        assert pod.get("serviceAccountName") in accounts, workload["metadata"]["name"]
        used[workload["metadata"]["name"]] = pod["serviceAccountName"]
    assert used["ingest"] != used["trainers"] != used["inference"] != used["monitor"]


def test_the_base_bucket_is_a_placeholder_no_store_accepts(objects: Objects) -> None:
    url = one(objects, "ConfigMap", "fermion")["data"]["FERMION_STORE_URL"]
    bucket = url.removeprefix("s3://").split("/")[0]
    assert not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket), "the deploy command must set it"


def test_trainers_sign_and_inference_trusts_the_public_key(objects: Objects) -> None:
    for name in ("trainers", "federated"):
        workload = one(objects, "Deployment", name)
        [container] = workload["spec"]["template"]["spec"]["containers"]
        key_file = env(container)["FERMION_SIGNING_KEY_FILE"]["value"]
        [mount] = [m for m in container["volumeMounts"] if key_file.startswith(m["mountPath"] + "/")]
        assert mount["readOnly"] is True
        [volume] = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "fermion-signing"
    [ksvc] = [o for o in objects if o["apiVersion"].startswith("serving.knative.dev")]
    for container in (ksvc["spec"]["template"]["spec"]["containers"][0], _container(objects, "Deployment", "ingest")):
        trusted = env(container)["FERMION_TRUSTED_KEYS"]["valueFrom"]["secretKeyRef"]
        assert trusted == {"name": "fermion-trusted-keys", "key": "trusted_keys"}
    assert "fermion-signing" not in secret_names(ksvc["spec"]["template"]["spec"])


def test_each_unit_is_its_own_nats_user_and_only_the_admin_provisions(objects: Objects) -> None:
    roles = {"ingest": "ingest", "trainers": "trainer", "inference": "inference", "monitor": "monitor"}
    roles |= {"provision-streams": "admin", "federated": "federated"}
    for workload, pod in pods(objects):
        name = workload["metadata"]["name"]
        [container] = pod["containers"]
        variables = env(container)
        for var in ("FERMION_NATS_USER", "FERMION_NATS_PASSWORD"):
            ref = variables[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == f"fermion-nats-{roles[name]}", (name, var)
        provisions = variables.get("FERMION_PROVISION", {}).get("value", "true")
        assert provisions == ("true" if name == "provision-streams" else "false"), name


def test_the_provisioning_job_registers_the_first_admin_key(objects: Objects) -> None:
    job = one(objects, "Job", "provision-streams")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "fermion.infra.provision"]
    record = env(container)["FERMION_ADMIN_RECORD_FILE"]["value"]
    [mount] = [m for m in container["volumeMounts"] if record.startswith(m["mountPath"] + "/")]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "fermion-admin-record"
