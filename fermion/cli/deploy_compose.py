"""`fermion deploy compose up|down --dir DIR`: the platform as local containers (infra/compose.py).

`up` makes the deployment's identity under DIR (shown once), writes its secrets and DIR/compose.yaml,
builds the images it lacks, starts everything and waits until ingest and inference answer ready. Point
the CLI at it with the printed FERMION_INGEST_URL, FERMION_INFERENCE_URL and FERMION_API_KEY.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .console import Output, OutputOption, emit, fail, note, say

compose_app = typer.Typer(help="The platform as local containers (docker compose).", no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="the deployment's directory (identity, secrets, compose.yaml)")]
ProjectOpt = Annotated[str, typer.Option("--project", help="compose project name (default: from DIR)")]


@compose_app.command("up")
def up(
    directory: DirOpt,
    project: ProjectOpt = "",
    ingest_port: Annotated[int, typer.Option("--ingest-port", help="ingest on 127.0.0.1:PORT")] = 8001,
    inference_port: Annotated[int, typer.Option("--inference-port", help="inference on 127.0.0.1:PORT")] = 8000,
    bucket: Annotated[str, typer.Option("--bucket", help="the S3 bucket of the registry")] = "fermion",
    local_base: Annotated[
        bool,
        typer.Option("--local-base", help="no registry: build FROM a local Debian base, stand-ins for NATS and MinIO"),
    ] = False,
    build: Annotated[bool, typer.Option("--build/--no-build", help="build the images that are missing")] = True,
    timeout_s: Annotated[float, typer.Option("--timeout", help="seconds to wait for ready")] = 300.0,
    output: OutputOption = Output.table,
) -> None:
    """Start the platform in containers under DIR and wait until it answers."""
    from fermion.infra.compose import ComposeError, ComposeOptions
    from fermion.infra.compose import up as compose_up
    from fermion.infra.images import ImageError

    opts = ComposeOptions(
        dir=directory.expanduser().resolve(),
        project=project,
        bucket=bucket,
        ingest_port=ingest_port,
        inference_port=inference_port,
        local_base=local_base,
    )
    if output is Output.table:
        note(f"starting {opts.name} from {opts.dir} (images are built once; the first build takes minutes)")
    try:
        deployment = compose_up(opts, build_missing=build, timeout_s=timeout_s)
    except (ComposeError, ImageError, OSError) as exc:
        raise fail(str(exc)) from exc
    data = asdict(deployment)
    if output is not Output.table:
        if deployment.admin_key:
            note(f"admin key (shown once; kept in {deployment.admin_key_file}): {deployment.admin_key}")
        emit({k: v for k, v in data.items() if k != "admin_key"}, output)
        return
    say(f"{opts.name} is up in {deployment.seconds:.0f} s")
    if deployment.admin_key:
        say(f"admin key (shown once; kept in {deployment.admin_key_file}):\n  {deployment.admin_key}")
    say(f"  export FERMION_INGEST_URL={deployment.ingest_url}")
    say(f"  export FERMION_INFERENCE_URL={deployment.inference_url}")
    say(f'  export FERMION_API_KEY="$(cat {deployment.admin_key_file})"')


@compose_app.command("down")
def down(
    directory: DirOpt,
    project: ProjectOpt = "",
    volumes: Annotated[bool, typer.Option("--volumes", help="also remove its volumes (NATS and S3 data)")] = False,
) -> None:
    """Stop and remove the deployment's containers and network (and volumes with --volumes)."""
    from fermion.infra.compose import ComposeError, ComposeOptions
    from fermion.infra.compose import down as compose_down

    opts = ComposeOptions(dir=directory.expanduser().resolve(), project=project)
    if not (opts.dir / "compose.yaml").is_file():
        raise fail(f"no deployment in {opts.dir} (compose.yaml is missing)")
    try:
        compose_down(opts, volumes=volumes)
    except ComposeError as exc:
        raise fail(str(exc)) from exc
    say(f"{opts.name} is down" + (", volumes removed" if volumes else ""))
