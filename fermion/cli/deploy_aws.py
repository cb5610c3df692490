"""`fermion deploy aws render|deploy`: the Lambda functions (serverless.yml) and the ECS services
(infra/aws/ecs.yml: trainers, monitor, NATS), their secrets in Secrets Manager (infra/aws_render.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from .console import Output, OutputOption, emit, fail, note, say

aws_app = typer.Typer(
    help="Deploy to AWS: Lambda functions, ECS Fargate services, Secrets Manager.", no_args_is_help=True
)
DirOption = Annotated[Path, typer.Option("--dir", help="where the rendered deployment lives")]


@aws_app.command()
def render(
    directory: DirOption,
    bucket: Annotated[str, typer.Option(help="the model store bucket (a global name: make it yours)")],
    stage: str = "dev",
    region: str = "us-east-1",
    image_uri: Annotated[str, typer.Option(help="the Lambda image (infra/docker/lambda.Dockerfile) in ECR")] = "",
    trainer_image_uri: Annotated[str, typer.Option(help="the trainer image in ECR (runs the monitor too)")] = "",
    vpc_id: str = "",
    subnet_ids: Annotated[str, typer.Option(help="two private subnets in two zones, comma-separated")] = "",
    security_group_id: Annotated[str, typer.Option(help="the VPC functions' security group")] = "",
    route_table_ids: Annotated[str, typer.Option(help="the subnets' route tables (S3 gateway endpoint)")] = "",
    concurrency: Annotated[int | None, typer.Option(help="reserved concurrency per function (default: none)")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Make the deployment's identity and write its secrets' payloads, params and templates into --dir."""
    from fermion.infra.aws_render import AwsTarget
    from fermion.infra.aws_render import render as write

    target = AwsTarget(
        bucket,
        stage,
        region,
        image_uri,
        trainer_image_uri,
        vpc_id,
        subnet_ids,
        security_group_id,
        route_table_ids,
        concurrency,
    )
    done = write(directory, target)
    data = {
        "dir": str(done.dir),
        "written": [str(p) for p in done.files],
        "secrets": {k: str(v) for k, v in done.secrets.items()},
        "admin_key_file": str(done.admin_key_file),
        "admin_key_new": done.admin_key_new,
        "missing": done.missing,
    }
    if output is not Output.table:
        return emit(data, output)
    for path in done.files:
        say(f"wrote {path}")
    if done.admin_key_new:
        key = done.admin_key_file.read_text().strip()
        say(f"first admin key (shown once; kept in {done.admin_key_file}, mode 0600): {key}")
    if done.missing:
        note("a deploy needs " + ", ".join("--" + m.replace("_", "-") for m in done.missing) + ": render again")
    return None


@aws_app.command()
def deploy(
    directory: DirOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the commands; run and change nothing")] = False,
) -> None:
    """Create the secrets, deploy the ECS stack and the Lambda functions, run the provisioning task."""
    from fermion.infra import aws_render

    if not (directory / "aws.json").exists():
        raise fail(f"{directory} holds no rendered deployment: run `fermion deploy aws render --dir {directory}` first")
    if dry_run:
        for argv in aws_render.deploy_commands(directory):
            say(shlex.join(argv))
        return
    try:
        for argv in aws_render.deploy(directory):
            say(f"done: {shlex.join(argv[:6])} ...")
    except RuntimeError as exc:
        raise fail(str(exc)) from exc
