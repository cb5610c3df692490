"""`fermion runs ...`: training run history, from the ingest function's `/v1/runs` routes.

Every command takes `-o table|json|yaml`; job ids print whole (tables fold them) and `show` and
`compare` take any unique prefix of one (ingest resolves it; an ambiguous one is refused, naming
the candidates).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from fermion.client import Client, FermionError

from .console import Output, OutputOption, emit, say, show

runs_app = typer.Typer(help="Training run history: parameters, per-epoch curves, final metrics, lineage.")
RUN_COLUMNS = ("job", "model", "status", "started", "epochs", "version", "accuracy", "macro-F1")


def _metric(run: dict[str, Any], name: str) -> str:
    value = run["metrics"].get(name)
    return f"{value:.4f}" if value is not None else "-"


def _row(r: dict[str, Any]) -> list[str]:
    return [
        r["job_id"],
        r["model_name"],
        r["status"],
        datetime.fromisoformat(r["started"]).strftime("%Y-%m-%d %H:%M:%S"),
        str(r["epochs_done"]),
        str(r["version"] or "-"),
        _metric(r, "accuracy"),
        _metric(r, "macro_f1"),
    ]


@runs_app.command("list")
def runs_list(
    model: Annotated[str | None, typer.Option(help="only this model's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    output: OutputOption = Output.table,
) -> None:
    """A tenant's runs, newest first (full job ids; `show` and `compare` take a unique prefix)."""
    with Client.from_settings() as client:
        runs = client.runs(model, limit)
    emit(runs, output, RUN_COLUMNS, _row)


@runs_app.command("show")
def runs_show(
    job: Annotated[str, typer.Argument(help="a job id or a unique prefix of one")],
    output: OutputOption = Output.table,
) -> None:
    """One run: parameters, every epoch, final metrics, lineage (or the error)."""
    with Client.from_settings() as client:
        r = client.run(job)
    if output is not Output.table:
        return emit(r, output)
    say(f"{r['job_id']}  {r['model_name']}  {r['status']}  version {r['version'] or '-'}")
    say(f"parameters: {r['parameters']}")
    say(f"dataset: {r['dataset'].get('name')} {r['dataset'].get('sha256', '')}")
    names = sorted({k for e in r["epochs"] for k in e["metrics"]})
    table = Table("epoch", "loss", *names, "seconds")
    for e in r["epochs"]:
        table.add_row(
            str(e["epoch"]),
            f"{e['loss']:.4f}" if e.get("loss") is not None else "-",
            *(f"{e['metrics'][n]:.4f}" if n in e["metrics"] else "-" for n in names),
            f"{e['seconds']:.2f}" if e.get("seconds") is not None else "-",
        )
    show(table)
    if r["metrics"]:
        say(f"final metrics: {r['metrics']}")
    if r["lineage"]:
        say(f"lineage: {r['lineage']}")
    if r["error"]:
        say(f"error: {r['error']}")
    return None


@runs_app.command("compare")
def runs_compare(
    jobs: Annotated[list[str], typer.Argument(help="two or more job ids, or unique prefixes of them")],
    output: OutputOption = Output.table,
) -> None:
    """Runs side by side: the parameters that differ, final metrics, and the last epoch's loss."""
    if len(jobs) < 2:
        raise FermionError("give two or more job ids to compare")
    with Client.from_settings() as client:
        compared = client.compare_runs(jobs)
    if output is not Output.table:
        return emit(compared, output)
    records = compared["runs"]
    table = Table("")
    for r in records:
        table.add_column(r["job_id"], overflow="fold")  # a job id is never cut: it folds
    for k in compared["differing_parameters"]:
        table.add_row(f"[yellow]{escape(k)}[/yellow]", *(escape(repr(r["parameters"].get(k))) for r in records))
    for name in sorted({k for r in records for k in r["metrics"]}):
        table.add_row(name, *(_metric(r, name) for r in records))
    table.add_row("final loss", *(_final_loss(r) for r in records))
    table.add_row("status", *(r["status"] for r in records))
    show(table)
    return None


def _final_loss(run: dict[str, Any]) -> str:
    last = run["epochs"][-1] if run["epochs"] else {}
    return f"{last['loss']:.4f}" if last.get("loss") else "-"


@runs_app.command("export")
def runs_export(
    mlflow: Annotated[str, typer.Option("--mlflow", help="the MLflow tracking server's URI (http://HOST:PORT)")],
    run: Annotated[str | None, typer.Option("--run", help="the job id of the run to export")] = None,
    model: Annotated[str | None, typer.Option("--model", help="NAME or NAME:VERSION: its version's run")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Log a run into MLflow: parameters, per-epoch loss and metrics, and the version's graph (ONNX flavour)."""
    from .tracking import export_run

    with Client.from_settings() as client:
        out = export_run(client, mlflow, job=run, model=model)
    if output is not Output.table:
        emit(out, output)
        return
    say(
        f"exported to MLflow run {out['run_id']} (experiment {out['experiment_id']}): "
        f"{out['params']} parameters, {out['metrics']} metric points"
        + (f"; model {out['model_uri']}" if out["model_uri"] else "")
    )
