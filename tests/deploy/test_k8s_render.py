"""`fermion deploy k8s render|apply` and the README's Kubernetes walk-through, run as far as this
machine allows: render for real, apply as a dry run, every object checked against its schema."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fermion.cli import app as cli
from fermion.infra.identity import ROLES, LocalIdentity
from tests.helpers.manifests import K8S, KUBECTL, env, one, pods, render, secret_names, validate
from tests.helpers.paths import REPO

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (its built-in kustomize renders the manifests)"),
]
REGISTRY = "registry.example.com/ml"
ROLE_PREFIX = "arn:aws:iam::123456789012:role/fermion-"


def _fermion(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _render(directory: Path, *extra: str) -> Any:
    result = _fermion("deploy", "k8s", "render", "--dir", str(directory), *extra)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("k8s")
    args = ["--bucket", "acme-models", "--image-registry", REGISTRY, "--host", "ingest.acme.dev"]
    _render(directory, *args, "--aws-role-prefix", ROLE_PREFIX, "--gcp-project", "acme-ml-prod")
    return directory


def test_render_refuses_to_run_without_a_bucket(tmp_path: Path) -> None:
    missing = _fermion("deploy", "k8s", "render", "--dir", str(tmp_path / "a"))
    assert missing.exit_code == 2 and "--bucket" in missing.output
    bad = _fermion("deploy", "k8s", "render", "--dir", str(tmp_path / "b"), "--bucket", "Not_A_Bucket")
    assert bad.exit_code == 1 and "--bucket" in bad.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_rendered_platform_validates_with_this_clusters_settings(deployment: Path) -> None:
    objects = render(deployment)
    validate(objects)
    assert one(objects, "ConfigMap", "fermion")["data"]["FERMION_STORE_URL"] == "s3://acme-models"
    images = [c["image"] for _, pod in pods(objects) for c in pod["containers"]]
    assert images and all(i.startswith(REGISTRY + "/fermion-") for i in images), images
    [trainer] = one(objects, "Deployment", "trainers")["spec"]["template"]["spec"]["containers"]
    assert env(trainer)["FERMION_RANK_IMAGE"]["value"] == trainer["image"]  # the rank Jobs follow the registry
    ingress = one(objects, "Ingress", "ingest")
    assert ingress["spec"]["rules"][0]["host"] == "ingest.acme.dev" == ingress["spec"]["tls"][0]["hosts"][0]
    for _, pod in pods(objects):
        notes = one(objects, "ServiceAccount", pod["serviceAccountName"])["metadata"]["annotations"]
        role = pod["serviceAccountName"].removeprefix("fermion-")
        assert notes["eks.amazonaws.com/role-arn"] == ROLE_PREFIX + role
        assert notes["iam.gke.io/gcp-service-account"] == f"fermion-{role}@acme-ml-prod.iam.gserviceaccount.com"


def test_the_cpu_overlay_renders_without_gpus(tmp_path: Path) -> None:
    _render(tmp_path, "--bucket", "acme-models", "--overlay", "cpu", "--image-registry", REGISTRY)
    objects = render(tmp_path)
    validate(objects)
    limits = [c.get("resources", {}).get("limits", {}) for _, pod in pods(objects) for c in pod["containers"]]
    assert not any("nvidia.com/gpu" in lim for lim in limits)
    assert one(objects, "Service", "inference")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{REGISTRY}/fermion-inference-cpu:0.1.0"
    )
    bad = _fermion("deploy", "k8s", "render", "--dir", str(tmp_path), "--bucket", "acme-models", "--overlay", "tpu")
    assert bad.exit_code == 1 and "--overlay" in bad.output


def test_secrets_live_apart_from_the_platform_and_come_from_the_identity(deployment: Path) -> None:
    platform, kept = render(deployment), render(deployment / "secrets")
    assert validate(kept) == {"Namespace", "Secret"}
    shipped = {o["metadata"]["name"]: o["stringData"] for o in kept if o["kind"] == "Secret"}
    platform_secrets = {o["metadata"]["name"] for o in platform if o["kind"] == "Secret"}
    read = set().union(*(secret_names(pod) for _, pod in pods(platform)))
    assert read <= set(shipped) | platform_secrets, read - set(shipped)  # nothing a pod reads is missing
    assert not set(shipped) & platform_secrets
    identity = LocalIdentity(deployment / "identity")
    assert shipped["fermion-nats-server"]["auth.conf"] == identity.nats_config.read_text()
    assert json.loads(shipped["fermion-trusted-keys"]["trusted_keys"]) == [identity.public_key()]
    assert shipped["fermion-signing"]["signing.key"] == identity.signing_key.read_text()
    for role in ROLES:
        assert shipped[f"fermion-nats-{role}"] == {"user": role, "password": identity.nats_password(role)}
    admin_key = identity.admin_key()
    assert admin_key and admin_key not in (deployment / "secrets" / "secrets.yaml").read_text()  # only its hash
    for path in (deployment / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_rendering_again_keeps_every_credential_and_shows_the_admin_key_once(tmp_path: Path) -> None:
    first = _render(tmp_path, "--bucket", "acme-models")
    key = LocalIdentity(tmp_path / "identity").admin_key()
    assert key and key in first.output and str(tmp_path / "identity" / "admin.key") in first.output
    before = (tmp_path / "secrets" / "secrets.yaml").read_text()
    again = _render(tmp_path, "--bucket", "acme-models", "-o", "json")
    assert key not in again.output
    listed = json.loads(again.stdout)
    assert listed["admin_key_file"] == str(tmp_path / "identity" / "admin.key") and listed["admin_key_new"] is False
    assert all(Path(p).exists() for p in listed["files"])
    assert (tmp_path / "secrets" / "secrets.yaml").read_text() == before


def test_nats_reads_its_users_from_the_rendered_secret(deployment: Path) -> None:
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    [volume] = [p["value"] for p in values["podTemplate"]["patch"] if p["path"] == "/spec/volumes/-"]
    [mount] = [p["value"] for p in values["container"]["patch"] if p["value"]["name"] == volume["name"]]
    [include] = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    # The chart's config is /etc/nats-config/nats.conf; includes are relative to it.
    assert os.path.normpath(os.path.join("/etc/nats-config", include)) == f"{mount['mountPath']}/auth.conf"
    assert volume["secret"]["secretName"] == "fermion-nats-server"
    secret = one(render(deployment / "secrets"), "Secret", "fermion-nats-server")
    conf = secret["stringData"]["auth.conf"]
    assert all(f'"user": "{role}"' in conf for role in ROLES)


def test_apply_dry_run_prints_both_applies_and_applies_nothing(deployment: Path) -> None:
    result = _fermion("deploy", "k8s", "apply", "--dir", str(deployment), "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    secrets_at = next(i for i, ln in enumerate(lines) if ln.endswith(f"apply -k {deployment / 'secrets'}"))
    platform_at = next(i for i, ln in enumerate(lines) if ln.endswith(f"apply -k {deployment}"))
    assert secrets_at < platform_at and "nothing was applied" in result.output
    empty = _fermion("deploy", "k8s", "apply", "--dir", str(deployment / "nowhere"), "--dry-run")
    assert empty.exit_code == 1 and "render" in empty.output


def _walkthrough() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "fermion deploy k8s render" in b]
    return [shlex.split(ln) for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_the_readme_walkthrough_renders_and_dry_runs(tmp_path: Path) -> None:
    steps = _walkthrough()
    words = [" ".join(s) for s in steps]
    for step in steps:  # every local file a step reads exists
        for flag, value in itertools.pairwise(step):
            if flag in ("-f", "--patch-file") and "://" not in value:
                assert (REPO / value).is_file(), value
    steps = [[a.replace("~/fermion-k8s", str(tmp_path)) for a in s] for s in steps]
    order = {key: next(i for i, w in enumerate(words) if key in w) for key in _ORDER}
    assert sorted(order, key=order.__getitem__) == _ORDER, order
    assert "--create-namespace" in words[order["helm install nats"]]
    for step in steps:
        if step[:3] == ["fermion", "deploy", "k8s"]:
            if step[3] == "apply" and "--dry-run" not in step:
                continue  # no cluster here
            result = _fermion(*step[1:])
            assert result.exit_code == 0, (step, result.output)
        elif step[:3] == ["kubectl", "apply", "-k"]:
            validate(render(Path(step[3])))


# The walk-through's order: Knative's flags before anything Knative must admit; the Secrets (and the
# namespace) before NATS, whose pods read fermion-nats-server; NATS before the platform.
_ORDER = [
    "config-features",
    "fermion deploy k8s render",
    "kubectl apply -k",
    "helm install nats",
    "fermion deploy k8s apply",
]
