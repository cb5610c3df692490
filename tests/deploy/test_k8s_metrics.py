"""Prometheus on Kubernetes reaches every function's /metrics: infra/prometheus/prometheus.yml's scrape
jobs, applied to the pods kustomize renders (both overlays), find each unit's metrics port; the
trainers and the monitor listen on the pod's address there, and a NetworkPolicy admits Prometheus.

Debian's promtool is built without Kubernetes discovery, so promtool checks the file with each job's
discovery swapped for a static target (everything else as written), and the discovery itself is
checked here: the relabelling each job does, run on the labels Kubernetes gives the rendered pods.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fermion.functions.monitor.settings import MonitorSettings
from fermion.functions.trainer.settings import TrainerSettings
from tests.helpers.manifests import KUBECTL, ROOTS, env, pods, render
from tests.helpers.paths import REPO

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (its built-in kustomize renders the manifests)"),
]

CONFIG = REPO / "infra" / "prometheus" / "prometheus.yml"
Objects = list[dict[str, Any]]
# Each job, the unit its rules and dashboards mean by it, as the pods' app.kubernetes.io/name says.
JOBS = {
    "fermion-trainer": "trainer",
    "fermion-monitor": "monitor",
    "fermion-ingest": "ingest",
    "fermion-inference": "inference",
}


@pytest.fixture(scope="module", params=sorted(ROOTS))
def objects(request: pytest.FixtureRequest) -> Objects:
    return render(ROOTS[request.param])


def _config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def _targets(job: dict[str, Any], objects: Objects) -> set[tuple[str, int]]:
    """(unit, port) of every container port the job keeps, as Prometheus's pod discovery labels them."""
    kept = set()
    for workload, pod in pods(objects):
        if workload["metadata"].get("namespace") != "fermion":
            continue
        labels = workload["spec"]["template"].get("metadata", {}).get("labels", {})
        knative = workload["apiVersion"].startswith("serving.knative.dev")
        for container in pod["containers"]:
            for port in container.get("ports", []):
                meta = {
                    "__meta_kubernetes_pod_label_app_kubernetes_io_name": labels.get("app.kubernetes.io/name", ""),
                    # A Knative Revision's pods name the user container's port `user-port` (knative/serving's
                    # UserPortName), whatever the Service's template calls it.
                    "__meta_kubernetes_pod_container_port_name": "user-port" if knative else port.get("name", ""),
                    "__meta_kubernetes_pod_name": workload["metadata"]["name"],
                }
                if _relabel(job["relabel_configs"], meta):
                    kept.add((meta["__meta_kubernetes_pod_label_app_kubernetes_io_name"], port["containerPort"]))
    return kept


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Whether the job keeps a target with these labels: `keep` is the one action the config drops with."""
    for rule in rules:
        if rule.get("action") == "keep":
            value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):  # Prometheus anchors its regexes
                return False
    return True


def test_each_function_has_a_scrape_job_that_finds_its_metrics_port(objects: Objects) -> None:
    jobs = {job["job_name"]: job for job in _config()["scrape_configs"]}
    assert set(jobs) == set(JOBS)
    for name, unit in JOBS.items():
        targets = _targets(jobs[name], objects)
        assert targets and {u for u, _ in targets} == {unit}, (name, targets)
    assert _targets(jobs["fermion-trainer"], objects) == {("trainer", 9464)}
    assert _targets(jobs["fermion-monitor"], objects) == {("monitor", 9464)}


def test_the_trainers_and_the_monitor_serve_metrics_on_the_pods_address_to_prometheus_only(objects: Objects) -> None:
    for workload, pod in pods(objects):
        if workload["metadata"]["name"] not in ("trainers", "monitor") or workload["kind"] != "Deployment":
            continue
        [container] = pod["containers"]
        variables = env(container)
        assert variables["FERMION_METRICS_HOST"]["value"] == "0.0.0.0"  # loopback is unreachable from Prometheus
        port = int(variables["FERMION_METRICS_PORT"]["value"])
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        # The variables are the ones the unit's settings read.
        with pytest.MonkeyPatch.context() as patch:
            for name in ("FERMION_METRICS_HOST", "FERMION_METRICS_PORT"):
                patch.setenv(name, variables[name]["value"])
            read = MonitorSettings() if workload["metadata"]["name"] == "monitor" else TrainerSettings()
        assert (read.metrics_host, read.metrics_port) == ("0.0.0.0", port)
    [policy] = [
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "metrics-from-prometheus"
    ]
    assert set(policy["spec"]["podSelector"]["matchExpressions"][0]["values"]) == {"trainer", "monitor"}
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9464}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_prometheus_may_list_the_pods_of_fermion_and_nothing_else(objects: Objects) -> None:
    """Pod discovery in `fermion` needs a grant there: list and watch pods, for kube-prometheus's account."""
    [role] = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "prometheus-discovery"]
    assert role["metadata"]["namespace"] == "fermion"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "prometheus-discovery"]
    assert binding["roleRef"]["name"] == "prometheus-discovery"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}]
    jobs = _config()["scrape_configs"]
    assert {sd["role"] for job in jobs for sd in job["kubernetes_sd_configs"]} == {"pod"}
    assert {n for job in jobs for sd in job["kubernetes_sd_configs"] for n in sd["namespaces"]["names"]} == {"fermion"}


def test_the_http_functions_are_scraped_with_a_key_and_the_workers_without(objects: Objects) -> None:
    jobs = {job["job_name"]: job for job in _config()["scrape_configs"]}
    for name in ("fermion-ingest", "fermion-inference"):
        assert jobs[name]["authorization"]["credentials_file"].startswith("/etc/prometheus/secrets/")
    for name in ("fermion-trainer", "fermion-monitor"):
        assert "authorization" not in jobs[name]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (./scripts/setup installs it)")
def test_promtool_accepts_the_config_and_its_rules(tmp_path: Path) -> None:
    config = _config()
    for job in config["scrape_configs"]:  # this promtool has no Kubernetes discovery (see the docstring)
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
        if "authorization" in job:  # the mounted Secret's path, here a file of this test's
            job["authorization"]["credentials_file"] = str(tmp_path / "key")
    (tmp_path / "key").write_text("fermion-test-key")
    shutil.copy(CONFIG.parent / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr
