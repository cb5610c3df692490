"""A training job's (or a sweep's) progress as bars, until it ends."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from fermion.client import Client, JobFailed
from fermion.events import TrainingCompleted, TrainingFailed, TrainingProgress

from .console import console


def _columns() -> tuple[object, ...]:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )


def _track(client: Client, progress: Progress, task: TaskID, job: str) -> TrainingCompleted | TrainingFailed:
    for event in client.follow(job):
        if isinstance(event, TrainingProgress):
            d = event.data
            status = "started" if d.loss is None else f"loss {d.loss:.4f} acc {d.metrics.get('accuracy', 0):.3f}"
            if d.resumed_at is not None:
                status = f"resumed at epoch {d.resumed_at} from its checkpoint"
            elif d.workers and d.workers > 1:
                status += f", {d.workers} workers, {sum(d.samples_per_s):.0f} samples/s, {d.restarts or 0} restarts"
            progress.update(task, completed=d.epoch, total=d.epochs, status=status)
        elif isinstance(event, TrainingCompleted):
            v = event.data.version
            done = (
                f"registered version {v}"
                if v is not None
                else f"trial done, acc {event.data.metrics.get('accuracy', 0):.3f}"
            )
            progress.update(task, status=done)
            return event
        elif isinstance(event, TrainingFailed):
            cancelled = event.data.error == "JobCancelled"
            progress.update(task, status="cancelled" if cancelled else "failed")
            return event
    raise JobFailed(f"job {job}: its events ended without an outcome")


def follow_job(client: Client, job: str, epochs: int) -> TrainingCompleted:
    """Bar for one job; JobFailed (one line) if it failed or was cancelled."""
    with Progress(*_columns(), console=console, transient=False) as progress:  # type: ignore[arg-type]
        task = progress.add_task("training", total=epochs, status="waiting for a trainer")
        outcome = _track(client, progress, task, job)
    if isinstance(outcome, TrainingFailed):
        what = "was cancelled" if outcome.data.error == "JobCancelled" else "failed"
        raise JobFailed(f"job {job} {what}: {outcome.data.reason}")
    return outcome


def follow_jobs(client: Client, jobs: list[tuple[str, str, int]]) -> dict[str, TrainingCompleted | TrainingFailed]:
    """One bar per (job, label, epochs), followed in turn; the outcome of each."""
    out: dict[str, TrainingCompleted | TrainingFailed] = {}
    with Progress(*_columns(), console=console, transient=False) as progress:  # type: ignore[arg-type]
        tasks = {j: progress.add_task(label, total=e, status="queued") for j, label, e in jobs}
        for job, task in tasks.items():
            out[job] = _track(client, progress, task, job)
    return out
