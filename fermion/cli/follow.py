"""A training job's progress as a bar, until it ends."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fermion.client import Client
from fermion.events import TrainingCompleted, TrainingProgress

from .console import console


def follow_job(client: Client, job: str, epochs: int) -> TrainingCompleted:
    columns = (
        TextColumn("[bold]training[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=epochs, status="waiting for a trainer")

        def on_progress(event: TrainingProgress) -> None:
            d = event.data
            status = "started" if d.loss is None else f"loss {d.loss:.4f} acc {d.metrics.get('accuracy', 0):.3f}"
            if d.resumed_at is not None:
                status = f"resumed at epoch {d.resumed_at} from its checkpoint"
            elif d.workers and d.workers > 1:
                status += f", {d.workers} workers, {sum(d.samples_per_s):.0f} samples/s, {d.restarts or 0} restarts"
            progress.update(
                task,
                completed=d.epoch,
                total=d.epochs,
                status=status,
            )

        result = client.wait(job, on_progress=on_progress)
        progress.update(task, status="registered")
    return result
