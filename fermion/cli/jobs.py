"""`fermion jobs ...`: training jobs and dead letters, from the event log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from fermion.client import Client

from .console import console, fail

jobs_app = typer.Typer(help="Training jobs, from the event log.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered jobs.", no_args_is_help=True)
jobs_app.add_typer(dlq_app, name="dlq")


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(help="newest N")] = 20) -> None:
    """Jobs with their state, progress and outcome."""
    jobs = list(Client.from_settings().jobs().values())[-limit:]
    table = Table("job", "model", "state", "epoch", "accuracy", "version", "reason")
    for j in jobs:
        table.add_row(
            j.job_id,
            j.model_name,
            j.state,
            f"{j.epoch}/{j.epochs}" if j.epochs else "-",
            f"{j.metrics['accuracy']:.4f}" if "accuracy" in j.metrics else "-",
            str(j.version or "-"),
            (j.reason or "")[:60],
        )
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: Annotated[str, typer.Argument(help="the job id (the training.requested event id)")]) -> None:
    """One job in full."""
    job = Client.from_settings().jobs().get(job_id)
    if job is None:
        raise fail(f"no job {job_id} in the event log")
    console.print_json(json.dumps(job.__dict__, default=str))


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Cancel a job: before it starts, or at its next epoch."""
    Client.from_settings().cancel(job_id)
    console.print(f"cancel requested for {job_id}")


@dlq_app.command("list")
def dlq_list() -> None:
    """Dead-lettered jobs with the reason and delivery count."""
    letters = Client.from_settings().dead_letters()
    table = Table("seq", "job", "model", "deliveries", "reason")
    for d in letters:
        table.add_row(str(d.seq), d.job_id, d.model_name, d.deliveries, d.reason[:100])
    console.print(table)


@dlq_app.command("retry")
def dlq_retry(job_id: Annotated[str, typer.Argument(help="the dead-lettered job's id")]) -> None:
    """Publish a dead-lettered job again."""
    Client.from_settings().retry(job_id)
    console.print(f"job {job_id} published again")
