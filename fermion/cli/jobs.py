"""`fermion jobs ...`: training jobs and dead letters, from the event log (through ingest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fermion.client import Client

from .console import Output, OutputOption, emit, say

jobs_app = typer.Typer(help="Training and scoring jobs, from the event log.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered jobs.", no_args_is_help=True)
jobs_app.add_typer(dlq_app, name="dlq")
JOB_COLUMNS = ("job", "model", "state", "epoch", "accuracy", "version", "reason")


def job_row(j: dict[str, Any]) -> list[str]:
    if j.get("kind") == "scoring":  # rows instead of epochs
        progress = f"{j['rows_done']:,}/{j['rows']:,} rows" if j.get("rows") else f"{j.get('rows_done', 0):,} rows"
    else:
        progress = f"{j['epoch']}/{j['epochs']}" if j["epochs"] else "-"
    return [
        j["job_id"],
        j["model_name"],
        j["state"],
        progress,
        f"{j['metrics']['accuracy']:.4f}" if "accuracy" in j["metrics"] else "-",
        str(j["version"] or "-"),
        (j["reason"] or "")[:80],
    ]


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(help="newest N")] = 20, output: OutputOption = Output.table) -> None:
    """Jobs with their state, progress and outcome (full ids; `jobs show` takes a unique prefix)."""
    with Client.from_settings() as client:
        jobs = [j.as_dict() for j in client.jobs(limit).values()]
    emit(jobs, output, JOB_COLUMNS, job_row)


@jobs_app.command("show")
def jobs_show(
    job: Annotated[str, typer.Argument(help="a job id or a unique prefix of one")],
    output: OutputOption = Output.json,
) -> None:
    """One job in full."""
    with Client.from_settings() as client:
        found = client.job(job).as_dict()
    emit(found, output)


@jobs_app.command("cancel")
def jobs_cancel(
    job: Annotated[str, typer.Argument(help="a job id or a unique prefix of one")], output: OutputOption = Output.table
) -> None:
    """Cancel a job: before it starts, or after its current epoch."""
    with Client.from_settings() as client:
        out = client.cancel(job)
    if output is not Output.table:
        return emit(out, output)
    say(f"cancel requested for {out['job_id']} (it was {out['state']})")
    return None


@jobs_app.command("fetch")
def jobs_fetch(
    job: Annotated[str, typer.Argument(help="a scoring job's id or a unique prefix of one")],
    out: Annotated[Path | None, typer.Option(help="where to write it (default: the file's own name here)")] = None,
    url: Annotated[bool, typer.Option(help="print a presigned URL instead (where the store signs)")] = False,
) -> None:
    """Download a finished scoring job's predictions."""
    with Client.from_settings() as client:
        if url:
            return say(client.output_url(job)["url"])
        path = client.fetch_output(job, out)
    say(f"predictions of {job} written to {path}")
    return None


@dlq_app.command("list")
def dlq_list(output: OutputOption = Output.table) -> None:
    """Dead-lettered messages with the reason and delivery count (an admin key: every tenant's; `-`: none named)."""
    with Client.from_settings() as client:
        letters = [d.as_dict() for d in client.dead_letters()]
    emit(
        letters,
        output,
        ("seq", "tenant", "job", "model", "deliveries", "reason"),
        lambda d: [d["seq"], d["tenant"] or "-", d["job_id"], d["model_name"], d["deliveries"], d["reason"][:100]],
    )


@dlq_app.command("retry")
def dlq_retry(
    job: Annotated[str, typer.Argument(help="the dead-lettered job's id or a unique prefix")],
    output: OutputOption = Output.table,
) -> None:
    """Publish a dead-lettered job again."""
    with Client.from_settings() as client:
        out = client.retry(job)
    say(f"job {out['job_id']} published again") if output is Output.table else emit(out, output)
