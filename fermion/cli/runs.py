"""`fermion runs ...`: training run history (the run records in the object store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from .console import console

if TYPE_CHECKING:
    from fermion.model_store import RunRecord, Runs

runs_app = typer.Typer(help="Training run history: parameters, per-epoch curves, final metrics, lineage.")


def _runs() -> tuple[Runs, str]:
    # Read from the store itself (the serve extra), so the base CLI imports without it.
    from fermion.model_store import Runs, StoreSettings, open_registry

    settings = StoreSettings()
    return Runs(open_registry(settings).store), settings.tenant


def _metric(run: RunRecord, name: str) -> str:
    value = run.metrics.get(name)
    return f"{value:.4f}" if value is not None else "-"


@runs_app.command("list")
def runs_list(
    model: Annotated[str | None, typer.Option(help="only this model's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
) -> None:
    """A tenant's runs, newest first."""
    runs, tenant = _runs()
    table = Table("job", "model", "status", "started", "epochs", "version", "accuracy", "macro-F1")
    for r in runs.list(tenant, model, limit):
        table.add_row(
            r.job_id,
            r.model_name,
            r.status,
            r.started.strftime("%Y-%m-%d %H:%M:%S"),
            str(len(r.epochs)),
            str(r.version or "-"),
            _metric(r, "accuracy"),
            _metric(r, "macro_f1"),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(job: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """One run: parameters, every epoch, final metrics, lineage (or the error)."""
    runs, tenant = _runs()
    r = runs.get(tenant, job)
    console.print(f"[bold]{r.job_id}[/bold]  {r.model_name}  {r.status}  version {r.version or '-'}")
    console.print(f"parameters: {r.parameters}")
    console.print(f"dataset: {r.dataset.get('name')} {str(r.dataset.get('sha256', ''))[:16]}")
    names = sorted({k for e in r.epochs for k in e.metrics})
    table = Table("epoch", "loss", *names, "seconds")
    for e in r.epochs:
        table.add_row(
            str(e.epoch),
            f"{e.loss:.4f}" if e.loss is not None else "-",
            *(f"{e.metrics[n]:.4f}" if n in e.metrics else "-" for n in names),
            f"{e.seconds:.2f}" if e.seconds is not None else "-",
        )
    console.print(table)
    if r.metrics:
        console.print(f"final metrics: {r.metrics}")
    if r.lineage:
        console.print(f"lineage: {r.lineage}")
    if r.error:
        console.print(f"[red]error:[/red] {r.error}")


@runs_app.command("compare")
def runs_compare(jobs: Annotated[list[str], typer.Argument(help="two or more job ids")]) -> None:
    """Runs side by side: the parameters that differ, final metrics, and the last epoch's loss."""
    runs, tenant = _runs()
    records = [runs.get(tenant, j) for j in jobs]
    table = Table("", *(r.job_id for r in records))
    keys = sorted({k for r in records for k in r.parameters})
    for k in keys:
        values = [repr(r.parameters.get(k)) for r in records]
        if len(set(values)) > 1:
            table.add_row(f"[yellow]{k}[/yellow]", *values)
    for name in sorted({k for r in records for k in r.metrics}):
        table.add_row(name, *(_metric(r, name) for r in records))
    table.add_row(
        "final loss", *(f"{r.epochs[-1].loss:.4f}" if r.epochs and r.epochs[-1].loss else "-" for r in records)
    )
    table.add_row("status", *(r.status for r in records))
    console.print(table)
