"""`fermion datasets ...` and `fermion score`: stored tables with their profiles, and batch scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fermion.client import Client, JobFailed
from fermion.events import ScoringCompleted, ScoringFailed, ScoringProgress

from .console import Output, OutputOption, console, emit, say

datasets_app = typer.Typer(help="Stored datasets and their profiles.", no_args_is_help=True)
DATASET_COLUMNS = ("name", "sha256", "format", "size", "rows", "columns", "label", "task")


def print_profile(profile: dict[str, Any]) -> None:
    """A table's profile for people: one row per column, then the label's classes or spread."""
    table = Table(title=f"{profile['rows']:,} rows, {len(profile['columns'])} columns ({profile['format']})")
    for c in ("column", "kind", "missing", "distinct", "used"):
        table.add_column(c, overflow="fold")
    label = profile.get("label") or {}
    for c in profile["columns"]:
        used = "label" if c["name"] == label.get("column") else ("yes" if c["used"] else f"no: {c['reason']}")
        distinct = f"{'>' if c['distinct_more'] else ''}{c['distinct']:,}"
        table.add_row(c["name"], c["kind"], f"{c['missing']:,}", distinct, used)
    console.print(table)
    if not label:
        return
    if label["task"] == "classification":
        classes = ", ".join(f"{k}: {n:,}" for k, n in list(label["classes"].items())[:20])
        more = f" (+{len(label['classes']) - 20} more)" if len(label["classes"]) > 20 else ""
        say(f"label {label['column']!r}: classification, {len(label['classes'])} classes ({classes}{more})")
    else:
        t = label["target"]
        say(
            f"label {label['column']!r}: regression, mean {t['mean']:.4g}, std {t['std']:.4g}, "
            f"min {t['min']:.4g}, max {t['max']:.4g}"
        )


def _row(d: dict[str, Any]) -> list[Any]:
    sizes = [d["size"], d["rows"] or "-", d["columns"] or "-"]
    return [d["name"], d["sha256"][:12], d["format"], *sizes, d["label"] or "-", d["task"] or "-"]


@datasets_app.command("list")
def datasets_list(output: OutputOption = Output.table) -> None:
    """The tenant's stored datasets, one row per upload."""
    with Client.from_settings() as client:
        emit(client.datasets(), output, DATASET_COLUMNS, _row)


@datasets_app.command("show")
def datasets_show(
    name: Annotated[str, typer.Argument(help="a dataset's name")],
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    output: OutputOption = Output.table,
) -> None:
    """One dataset and its profile: columns, kinds, missing values, the label and its classes."""
    with Client.from_settings() as client:
        detail = client.dataset(name, sha256)
    if output is not Output.table:
        return emit(detail, output)
    say(f"dataset {detail['name']}: {detail['format']}, {detail['size']} bytes, sha256 {detail['sha256']}")
    if detail["profile"]:
        print_profile(detail["profile"])
    return None


def score(
    model: Annotated[str, typer.Argument(help="NAME (its latest), NAME@ALIAS or NAME:VERSION")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded table (csv or parquet)")],
    id_column: Annotated[str | None, typer.Option(help="the column written beside each prediction")] = None,
    format: Annotated[str, typer.Option(help="parquet or csv")] = "parquet",
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until the job ends, then fetch the predictions")] = False,
    out: Annotated[Path | None, typer.Option(help="with --follow: where to put the predictions")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Score a stored table with a registered model, as a job; `fermion jobs fetch JOB` downloads the result."""
    with Client.from_settings() as client:
        job = client.score(model, dataset, id_column=id_column, format=format, sha256=sha256)
        if not follow:
            if output is not Output.table:
                return emit(job, output)
            return say(f"scoring job {job['job_id']}: {job['model_name']}:{job['version']} over {dataset}")
        done = _follow(client, job["job_id"])
        path = client.fetch_output(job["job_id"], out)
        say(f"{done.data.rows:,} predictions by {done.data.model_name}:{done.data.version} written to {path}")
    return None


def _follow(client: Client, job: str) -> ScoringCompleted:
    columns = (TextColumn("scoring"), BarColumn(), TextColumn("{task.completed:,} rows"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("scoring", total=None)
        for event in client.follow(job):
            if isinstance(event, ScoringProgress):
                progress.update(task, completed=event.data.rows_done, total=event.data.rows)
            elif isinstance(event, ScoringCompleted):
                progress.update(task, completed=event.data.rows, total=event.data.rows)
                return event
            elif isinstance(event, ScoringFailed):
                raise JobFailed(f"scoring job {job} failed: {event.data.reason}")
    raise JobFailed(f"scoring job {job}: its events ended without an outcome")
