"""A Kubernetes deployment's directory: the manifests of infra/k8s set up for one cluster, and its Secrets.

`render` writes, under DIR:
- `identity/`: the deployment's identity (infra/identity.py): the registry's signing pair, one NATS
  user per role, the first admin API key (0600) and its record;
- `k8s/`: a copy of infra/k8s (base, components, overlays, the NATS values, Knative's feature flags);
- `kustomization.yaml`: that copy for this cluster: the bucket, the image registry, the ingest host,
  the workload identity of each role's ServiceAccount (IRSA or GKE Workload Identity);
- `secrets/`: the Secrets (and the namespace), a kustomization of their own, never part of the one
  above, so `kubectl apply -k DIR` never overwrites credentials. Re-rendering reuses the identity.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .identity import ROLES, LocalIdentity

SOURCE = Path(__file__).with_name("k8s")
NAMESPACE = "fermion"
# Where each overlay's kustomization is, inside DIR/k8s.
OVERLAYS = {"gpu": "k8s", "cpu": "k8s/overlays/cpu"}
# The repository's kustomizations name every image ghcr.io/example/<name>; a registry replaces that.
EXAMPLE_REGISTRY = "ghcr.io/example"
IMAGES = ("fermion-ingest", "fermion-trainer", "fermion-inference-gpu", "fermion-inference-cpu")
# One ServiceAccount per role (base/serviceaccounts.yaml), each bound to its own cloud identity.
ACCOUNTS = ("ingest", "trainer", "inference", "monitor", "federated", "provision")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]*$")
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.:_/-]*[a-z0-9])?$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_AWS_ROLE_PREFIX = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]*$")
_RANK_IMAGE = {
    "source": {
        "kind": "Deployment",
        "name": "trainers",
        "fieldPath": "spec.template.spec.containers.[name=trainer].image",
    },
    "targets": [
        {
            "select": {"kind": "Deployment", "name": "trainers"},
            "fieldPaths": ["spec.template.spec.containers.[name=trainer].env.[name=FERMION_RANK_IMAGE].value"],
        }
    ],
}


class InvalidSetting(ValueError):
    """A render option that would give manifests a cluster cannot run."""


@dataclass(frozen=True)
class RenderOptions:
    """What differs between clusters; the bucket is required (there is no usable default)."""

    bucket: str
    overlay: Literal["cpu", "gpu"] = "gpu"
    image_registry: str | None = None
    host: str | None = None
    cluster_issuer: str | None = None
    aws_role_prefix: str | None = None
    gcp_project: str | None = None

    def check(self) -> None:
        """Refuse what would render into something broken (raises InvalidSetting)."""
        bucket, _, prefix = self.bucket.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket or not _PREFIX.match(prefix):
            raise InvalidSetting(f"--bucket {self.bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        if self.overlay not in OVERLAYS:
            raise InvalidSetting(f"--overlay {self.overlay!r}: one of {sorted(OVERLAYS)}")
        if self.image_registry is not None and not _REGISTRY.match(self.image_registry):
            raise InvalidSetting(f"--image-registry {self.image_registry!r} is not a registry path")
        if self.host is not None and not _HOST.match(self.host):
            raise InvalidSetting(f"--host {self.host!r} is not a DNS name")
        if self.aws_role_prefix is not None and not _AWS_ROLE_PREFIX.match(self.aws_role_prefix):
            raise InvalidSetting("--aws-role-prefix must look like arn:aws:iam::123456789012:role/fermion-")
        if self.gcp_project is not None and not _GCP_PROJECT.match(self.gcp_project):
            raise InvalidSetting(f"--gcp-project {self.gcp_project!r} is not a Google Cloud project id")

    @property
    def store_url(self) -> str:
        """The registry's URL in the bucket."""
        return "s3://" + self.bucket.removeprefix("s3://").rstrip("/")


@dataclass
class Rendered:
    """What `render` wrote."""

    directory: Path
    admin_key_file: Path
    admin_key_new: bool
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For `-o json`: every path written, and where the admin key is."""
        return {
            "dir": str(self.directory),
            "kustomization": str(self.directory / "kustomization.yaml"),
            "secrets": str(self.directory / "secrets"),
            "admin_key_file": str(self.admin_key_file),
            "admin_key_new": self.admin_key_new,
            "files": [str(p) for p in self.files],
        }


def render(directory: Path, options: RenderOptions) -> Rendered:
    """Bootstrap the identity under DIR and write the manifests and the Secrets (idempotent)."""
    options.check()
    directory = directory.resolve()
    identity = LocalIdentity(directory / "identity")
    new = identity.ensure_files()
    copy = directory / "k8s"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(SOURCE, copy)
    out = Rendered(directory, identity.admin_key_file, new)
    out.files.append(_write(directory / "kustomization.yaml", [kustomization(options)]))
    out.files += write_secrets(directory / "secrets", identity)
    out.files.append(copy)
    return out


def kustomization(options: RenderOptions) -> dict[str, Any]:
    """DIR's kustomization: the chosen overlay with this cluster's settings patched in."""
    doc: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [OVERLAYS[options.overlay]],
        "patches": [_config_patch(options.store_url), *_ingress_patches(options), *_identity_patches(options)],
    }
    if options.image_registry:
        registry = options.image_registry.rstrip("/")
        doc["images"] = [{"name": f"{EXAMPLE_REGISTRY}/{n}", "newName": f"{registry}/{n}"} for n in IMAGES]
        if options.overlay == "gpu":  # distributed training: the rank image follows the trainers' (again)
            doc["replacements"] = [_RANK_IMAGE]
    return doc


def _strategic(kind: str, name: str, body: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    patch = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE, **(meta or {})}}
    patch.update(body)
    return {"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(patch, sort_keys=False)}


def _config_patch(store_url: str) -> dict[str, Any]:
    return _strategic("ConfigMap", "fermion", {"data": {"FERMION_STORE_URL": store_url}})


def _ingress_patches(options: RenderOptions) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    if options.host:
        ops += [
            {"op": "replace", "path": "/spec/rules/0/host", "value": options.host},
            {"op": "replace", "path": "/spec/tls/0/hosts/0", "value": options.host},
        ]
    if options.cluster_issuer:
        path = "/metadata/annotations/cert-manager.io~1cluster-issuer"
        ops.append({"op": "replace", "path": path, "value": options.cluster_issuer})
    if not ops:
        return []
    return [{"target": {"kind": "Ingress", "name": "ingest"}, "patch": yaml.safe_dump(ops, sort_keys=False)}]


def workload_identity(role: str, options: RenderOptions) -> dict[str, str]:
    """The annotations that bind `role`'s ServiceAccount to its own cloud identity."""
    notes = {}
    if options.aws_role_prefix:
        notes["eks.amazonaws.com/role-arn"] = f"{options.aws_role_prefix}{role}"
    if options.gcp_project:
        notes["iam.gke.io/gcp-service-account"] = f"fermion-{role}@{options.gcp_project}.iam.gserviceaccount.com"
    return notes


def _identity_patches(options: RenderOptions) -> list[dict[str, Any]]:
    return [
        _strategic("ServiceAccount", f"fermion-{role}", {}, {"annotations": notes})
        for role in ACCOUNTS
        if (notes := workload_identity(role, options))
    ]


def secrets(identity: LocalIdentity) -> list[dict[str, Any]]:
    """The Secrets every unit reads, from the identity's files."""

    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "fermion"}}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}

    out = [
        # The NATS servers' users and permissions (the Helm values include it: nats/values.yaml).
        secret("fermion-nats-server", {"auth.conf": identity.nats_config.read_text()}),
        secret("fermion-signing", {"signing.key": identity.signing_key.read_text()}),
        secret("fermion-trusted-keys", {"trusted_keys": json.dumps([identity.public_key()])}),
        secret("fermion-admin-record", {"admin.record.json": identity.admin_record_file.read_text()}),
    ]
    out += [secret(f"fermion-nats-{r}", {"user": r, "password": identity.nats_password(r)}) for r in ROLES]
    return out


def write_secrets(directory: Path, identity: LocalIdentity) -> list[Path]:
    """DIR/secrets: the namespace and the Secrets, as a kustomization of their own (files 0600)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["namespace.yaml", "secrets.yaml"],
    }
    return [
        _write(directory / "namespace.yaml", [namespace]),
        _write(directory / "secrets.yaml", secrets(identity)),
        _write(directory / "kustomization.yaml", [kustomization]),
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the inline patches, the NATS config) as literal blocks: DIR stays readable."""


def _block(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _block)


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    header = "# Written by `fermion deploy k8s render`; render again rather than edit.\n"
    path.write_text(header + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False))
    return path


def apply_commands(directory: Path, kubectl: str = "kubectl") -> list[list[str]]:
    """What `fermion deploy k8s apply` runs: the Secrets first, then the platform (the finished
    provisioning Job is deleted first: a Job's pod template cannot change, and a new image re-provisions)."""
    return [
        [kubectl, "apply", "-k", str(directory / "secrets")],
        [kubectl, "delete", "job", "provision-streams", "-n", NAMESPACE, "--ignore-not-found"],
        [kubectl, "apply", "-k", str(directory)],
    ]


def dry_run_commands(directory: Path, kubectl: str = "kubectl", *, cluster: bool = True) -> list[list[str]]:
    """What `apply --dry-run` runs where kubectl exists: client-side dry runs of both applies, or, with
    no cluster configured (a client dry run still asks the API server for its kinds), the builds alone."""
    check = ["apply", "--dry-run=client", "-k"] if cluster else ["kustomize"]
    return [[kubectl, *check, str(directory / "secrets")], [kubectl, *check, str(directory)]]
