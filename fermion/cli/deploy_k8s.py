"""`fermion deploy k8s render|apply`: the platform on a Kubernetes cluster (infra/kubernetes.py).

`render` bootstraps the deployment's identity under DIR and writes the manifests (DIR, a kustomization
over infra/k8s) and the Secrets (DIR/secrets, their own kustomization); `apply` runs `kubectl apply -k`
on both, Secrets first. The walk-through from an empty cluster is in the README (Deploy, Kubernetes).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from .console import Output, OutputOption, emit, fail, note, say

k8s_app = typer.Typer(help="The platform on a Kubernetes cluster (kustomize, Knative, KEDA).", no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="the deployment's directory (identity, manifests, secrets)")]


@k8s_app.command("render")
def render(
    directory: DirOpt,
    bucket: Annotated[str, typer.Option("--bucket", help="the S3 bucket of the registry (required)")],
    overlay: Annotated[str, typer.Option("--overlay", help="gpu (GPU inference and trainers) or cpu")] = "gpu",
    image_registry: Annotated[
        str | None, typer.Option("--image-registry", help="where the images are pushed, e.g. ghcr.io/acme")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="ingest's public DNS name (the Ingress, TLS)")] = None,
    cluster_issuer: Annotated[
        str | None, typer.Option("--cluster-issuer", help="cert-manager ClusterIssuer (default letsencrypt)")
    ] = None,
    aws_role_prefix: Annotated[
        str | None,
        typer.Option("--aws-role-prefix", help="IRSA: each role's IAM role is PREFIX+role (ingest, trainer, ...)"),
    ] = None,
    gcp_project: Annotated[
        str | None, typer.Option("--gcp-project", help="GKE Workload Identity: fermion-ROLE@PROJECT.iam...")
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Write the manifests and the Secrets for one cluster under DIR (the identity is made once, reused)."""
    from fermion.infra.kubernetes import InvalidSetting, RenderOptions
    from fermion.infra.kubernetes import render as render_dir

    options = RenderOptions(
        bucket=bucket,
        overlay=overlay,  # type: ignore[arg-type]  # checked by RenderOptions.check
        image_registry=image_registry,
        host=host,
        cluster_issuer=cluster_issuer,
        aws_role_prefix=aws_role_prefix,
        gcp_project=gcp_project,
    )
    try:
        rendered = render_dir(directory.expanduser(), options)
    except InvalidSetting as exc:
        raise fail(str(exc)) from exc
    key = rendered.admin_key_file.read_text().strip() if rendered.admin_key_new else None
    if output is not Output.table:
        if key is not None:  # stdout stays the data; the key is shown once, on the terminal
            note(f"first admin API key (shown once; kept, mode 0600, in {rendered.admin_key_file}): {key}")
        emit(rendered.as_dict(), output)
        return
    for path in rendered.files:
        say(f"wrote {path}")
    if key is not None:
        say(f"first admin API key (shown once; kept, mode 0600, in {rendered.admin_key_file}):")
        say(f"  {key}")
    say(f"next: fermion deploy k8s apply --dir {directory}")


@k8s_app.command("apply")
def apply(
    directory: DirOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the commands; check them client-side")] = False,
) -> None:
    """`kubectl apply -k` the Secrets, then the platform, as `render` wrote them under DIR."""
    from fermion.infra.kubernetes import apply_commands, dry_run_commands

    directory = directory.expanduser()
    if not (directory / "kustomization.yaml").is_file() or not (directory / "secrets").is_dir():
        raise fail(f"{directory} holds no rendered deployment: run `fermion deploy k8s render --dir {directory}`")
    kubectl = shutil.which("kubectl")
    commands = apply_commands(directory, kubectl or "kubectl")
    if dry_run:
        for command in commands:
            say(shlex.join(command))
        if kubectl is None:
            say("(kubectl not found: nothing checked)")
            return
        context = subprocess.run([kubectl, "config", "current-context"], capture_output=True, check=False)
        if context.returncode != 0:
            say("(no cluster configured: checking that both kustomizations build, offline)")
        commands = dry_run_commands(directory, kubectl, cluster=context.returncode == 0)
    elif kubectl is None:
        raise fail("kubectl is not on PATH")
    for command in commands:
        quiet = dry_run and command[1] == "kustomize"  # the build itself is not worth printing
        if subprocess.run(command, check=False, capture_output=quiet).returncode != 0:
            raise fail(f"failed: {shlex.join(command)}")
    if dry_run:
        say("dry run: nothing was applied")
