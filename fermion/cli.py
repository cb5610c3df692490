"""The `fermion` command line."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fermion import export, federation
from fermion.client import Client, FermionError
from fermion.events import TrainingCompleted, TrainingProgress
from fermion.infra import Stack, StackSettings, is_up
from fermion.model_store import (
    Draft,
    Lineage,
    PipelineRule,
    Pipelines,
    RegistryError,
    Signature,
    StoreSettings,
    TensorSpec,
    open_registry,
)

app = typer.Typer(
    help="Fermion: event-driven, serverless ML. Train on events, serve ONNX over HTTP.",
    no_args_is_help=True,
    add_completion=False,
)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")
export.register(models_app)  # `fermion models export --edge` (fermion/export.py)
app.add_typer(federation.app, name="federated")  # `fermion federated ...` (fermion/federation.py)
jobs_app = typer.Typer(help="Training jobs, from the event log.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered jobs.", no_args_is_help=True)
jobs_app.add_typer(dlq_app, name="dlq")
app.add_typer(jobs_app, name="jobs")
pipelines_app = typer.Typer(help="Dataset-triggered pipelines: upload → train → promote.", no_args_is_help=True)
app.add_typer(pipelines_app, name="pipelines")
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _print_endpoints(s: StackSettings) -> None:
    console.print(f"  home       {s.home}")
    console.print(f"  nats       {s.nats_url}")
    console.print(f"  ingest     {s.ingest_url}   (POST /v1/datasets, /v1/trainings)")
    console.print(f"  inference  {s.inference_url}   (Open Inference Protocol v2: /v2/models/NAME/infer)")
    console.print(f"  logs       {s.home / 'logs'}")


@app.command()
def up() -> None:
    """Run nats-server, a trainer, ingest and inference on 127.0.0.1 until Ctrl-C."""
    settings = StackSettings()
    if is_up(settings):
        raise _fail(f"a stack already answers on {settings.ingest_url} and {settings.inference_url}")
    console.print("[bold]Starting Fermion[/] (ports: FERMION_NATS_PORT, FERMION_INGEST_PORT, FERMION_INFERENCE_PORT)")
    stack = Stack(settings)
    try:
        stack.start()
    except Exception as exc:
        raise _fail(str(exc)) from exc
    _print_endpoints(settings)
    console.print("[green]up[/] — Ctrl-C to stop")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            if dead := stack.failed():
                console.print(f"[red]{', '.join(dead)} exited; see {settings.home / 'logs'}[/]")
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        stack.stop()


@app.command()
def demo(
    epochs: Annotated[int, typer.Option(help="training epochs")] = 15,
) -> None:
    """Upload scikit-learn's digits, train a CNN, serve it, and report the served accuracy."""
    started = time.perf_counter()
    settings = StackSettings()
    stack = None
    if not is_up(settings):
        console.print("[bold]Starting a local stack[/] for the demo")
        try:
            stack = Stack(settings).start()
        except Exception as exc:
            raise _fail(str(exc)) from exc
        _print_endpoints(settings)
    try:
        _run_demo(settings, epochs, started)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    finally:
        if stack:
            stack.stop()


def _run_demo(settings: StackSettings, epochs: int, started: float) -> None:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise FermionError("the demo needs scikit-learn: pip install 'fermion[demo]'") from exc
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    held = order[: len(x) // 5]
    train = order[len(x) // 5 :]
    path = settings.home / "demo" / "digits.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x[train], y=y[train])

    with Client.from_settings(settings) as client:
        _demo_flow(client, settings, x, y, held, path, epochs, started)


def _demo_flow(
    client: Client,
    settings: StackSettings,
    x: np.ndarray,
    y: np.ndarray,
    held: np.ndarray,
    path: Path,
    epochs: int,
    started: float,
) -> None:
    ds = client.upload(path, name="digits")
    console.print(f"uploaded [bold]digits[/] ({len(x) - len(held)} rows, sha256 {ds['sha256'][:12]}…)")
    requested = time.perf_counter()
    job = client.train("digits", "digits", sha256=ds["sha256"], architecture="cnn", epochs=epochs, learning_rate=2e-3)
    console.print(f"training.requested: job {job}")
    result = _follow(client, job, epochs)
    console.print(
        f"registered [bold]digits[/] version {result.data.version}: "
        f"held-out accuracy {result.data.metrics['accuracy']:.4f}, "
        f"macro-F1 {result.data.metrics['macro_f1']:.4f}"
    )
    first = time.perf_counter()
    logits = client.predict("digits", x[held])
    served = time.perf_counter()
    accuracy = float(np.mean(logits.argmax(axis=1) == y[held]))
    meta = client.metadata("digits")
    console.print(f"served by {settings.inference_url} on {meta['parameters']['providers']}")
    console.print(f"[bold green]served accuracy on {len(held)} held-out digits: {accuracy:.4f}[/]")
    console.print(
        f"timings: training.requested → served answer {served - requested:.1f}s; "
        f"first inference request (load + verify + run) {served - first:.3f}s; "
        f"demo wall time {served - started:.1f}s"
    )


def _follow(client: Client, job: str, epochs: int) -> TrainingCompleted:
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
            progress.update(
                task,
                completed=d.epoch,
                total=d.epochs,
                status=status,
            )

        result = client.wait(job, on_progress=on_progress)
        progress.update(task, status="registered")
    return result


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".npz (x, y) or .csv with a header")],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file's stem)")] = None,
) -> None:
    """Upload a dataset; prints its stored reference."""
    try:
        console.print_json(json.dumps(Client.from_settings().upload(file, name)))
    except FermionError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="model name to register")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded dataset")],
    architecture: Annotated[str, typer.Option(help="mlp (tabular) or cnn (square images as flat pixels)")] = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    label_column: str = "label",
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
) -> None:
    """Publish a training request."""
    client = Client.from_settings()
    try:
        job = client.train(
            model,
            dataset,
            sha256=sha256,
            architecture=architecture,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            label_column=label_column,
        )
        console.print(f"job {job}")
        if follow:
            result = _follow(client, job, epochs)
            console.print(f"{model} version {result.data.version}: {result.data.metrics}")
    except FermionError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def sweep(
    model: Annotated[str, typer.Argument(help="model name to register the trials under")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded dataset")],
    architecture: str = "mlp",
    epochs: Annotated[str, typer.Option(help="comma-separated values to try")] = "20",
    learning_rates: Annotated[str, typer.Option(help="comma-separated values to try")] = "0.001,0.01",
    label_column: str = "label",
    metric: str = "macro_f1",
    alias: str = "production",
    minimum: float = 0.0,
) -> None:
    """Train every combination of the given epochs and learning rates; promote the best through the gate."""
    trials = [
        {"architecture": architecture, "epochs": int(e), "learning_rate": float(lr), "label_column": label_column}
        for e in epochs.split(",")
        for lr in learning_rates.split(",")
    ]
    try:
        out = Client.from_settings().sweep(
            model, dataset, trials, metric=metric, gate={"alias": alias, "metric": metric, "minimum": minimum}
        )
    except (FermionError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"sweep {out['sweep_id']}: {len(trials)} trials; the best by {metric} goes to {alias} if ≥ {minimum}")


@models_app.command("list")
def models_list() -> None:
    """List models with their versions and aliases."""
    settings = StoreSettings()
    try:
        registry = open_registry(settings)
        table = Table("model", "versions", "aliases")
        for name in registry.models(settings.tenant):
            info = registry.describe(settings.tenant, name)
            aliases = ", ".join(f"{a}→{v}" for a, v in sorted(info["aliases"].items()))
            table.add_row(name, ", ".join(map(str, info["versions"])), aliases)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(table)


@models_app.command("versions")
def models_versions(name: Annotated[str, typer.Argument(help="model name")]) -> None:
    """A model's versions with their metrics and lineage."""
    settings = StoreSettings()
    try:
        registry = open_registry(settings)
        table = Table("version", "created", "accuracy", "macro-F1", "training event", "content sha256")
        for v in registry.versions(settings.tenant, name):
            m = registry.manifest(settings.tenant, name, v)
            table.add_row(
                str(v),
                m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                f"{m.metrics.get('accuracy', float('nan')):.4f}",
                f"{m.metrics.get('macro_f1', float('nan')):.4f}",
                m.lineage.training_event_id or "-",
                m.content_sha256[:16],
            )
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(table)


@models_app.command("describe")
def models_describe(ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")]) -> None:
    """Print a version's manifest: files, signature, metrics, lineage, compile report."""
    settings = StoreSettings()
    try:
        console.print_json(open_registry(settings).lookup(settings.tenant, ref).model_dump_json())
    except RegistryError as exc:
        raise _fail(str(exc)) from exc


@models_app.command("push")
def models_push(
    name: Annotated[str, typer.Argument(help="model name to register")],
    file: Annotated[Path, typer.Argument(help="an .onnx file (external data files beside it)")],
    labels: Annotated[str | None, typer.Option(help="comma-separated class names, in output order")] = None,
) -> None:
    """Validate your own ONNX file and register it as the next version of NAME."""
    from fermion.compile import InvalidModel, validate_onnx

    settings = StoreSettings()
    try:
        model = validate_onnx(file)
        draft = Draft(
            signature=Signature(
                inputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.inputs],
                outputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.outputs],
            ),
            labels=labels.split(",") if labels else [],
            lineage=Lineage(recipe={"source": "push", "file": file.name}),
            compile_report={"source": "push", "opset": model.opset, "node_count": model.node_count},
        )
        manifest = open_registry(settings).register(settings.tenant, name, model.files, draft)
    except InvalidModel as exc:
        raise _fail(f"refused {file}: {exc}") from exc
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"registered {name} version {manifest.version} "
        f"({', '.join(f'{f} {e.size} B' for f, e in manifest.files.items())})"
    )


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int, typer.Argument(help="version to point the alias at")],
    alias: Annotated[str, typer.Option(help="alias to move")] = "production",
    expected: Annotated[int | None, typer.Option(help="only if the alias still points at this version")] = None,
) -> None:
    """Point an alias at a version (compare-and-swap; publishes models.promoted)."""
    try:
        out = Client.from_settings().promote(name, version, alias=alias, expected_version=expected)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{name}@{alias}: {out['previous_version']} → {out['version']}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Option(help="alias to roll back")] = "production",
) -> None:
    """Point an alias back at the version it held before its last move."""
    try:
        out = Client.from_settings().rollback(name, alias=alias)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{name}@{alias}: {out['previous_version']} → {out['version']}")


@models_app.command("unalias")
def models_unalias(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Argument(help="alias to delete")],
) -> None:
    """Delete an alias."""
    try:
        Client.from_settings().delete_alias(name, alias)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{name}@{alias} deleted")


@jobs_app.command("list")
def jobs_list(limit: Annotated[int, typer.Option(help="newest N")] = 20) -> None:
    """Jobs with their state, progress and outcome."""
    try:
        jobs = list(Client.from_settings().jobs().values())[-limit:]
    except FermionError as exc:
        raise _fail(str(exc)) from exc
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
    try:
        job = Client.from_settings().jobs().get(job_id)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    if job is None:
        raise _fail(f"no job {job_id} in the event log")
    console.print_json(json.dumps(job.__dict__, default=str))


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """Cancel a job: before it starts, or at its next epoch."""
    try:
        Client.from_settings().cancel(job_id)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"cancel requested for {job_id}")


@dlq_app.command("list")
def dlq_list() -> None:
    """Dead-lettered jobs with the reason and delivery count."""
    try:
        letters = Client.from_settings().dead_letters()
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    table = Table("seq", "job", "model", "deliveries", "reason")
    for d in letters:
        table.add_row(str(d.seq), d.job_id, d.model_name, d.deliveries, d.reason[:100])
    console.print(table)


@dlq_app.command("retry")
def dlq_retry(job_id: Annotated[str, typer.Argument(help="the dead-lettered job's id")]) -> None:
    """Publish a dead-lettered job again."""
    try:
        Client.from_settings().retry(job_id)
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"job {job_id} published again")


@pipelines_app.command("add")
def pipelines_add(
    name: Annotated[str, typer.Argument(help="rule name")],
    dataset: Annotated[str, typer.Option(help="dataset name or name prefix that triggers it")],
    model: Annotated[str, typer.Option(help="model to train and register")],
    architecture: str = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    label_column: str = "label",
    alias: Annotated[str, typer.Option(help="alias the gate promotes to")] = "production",
    metric: Annotated[str, typer.Option(help="gate metric")] = "macro_f1",
    minimum: Annotated[float, typer.Option(help="gate: promote only at or above this")] = 0.0,
    not_worse: Annotated[bool, typer.Option(help="gate: never promote below the current version")] = True,
) -> None:
    """Create or replace a pipeline rule."""
    from fermion.events import Gate, Recipe

    settings = StoreSettings()
    try:
        recipe = Recipe(
            architecture=architecture, epochs=epochs, learning_rate=learning_rate, label_column=label_column
        )
        gate = Gate(alias=alias, metric=metric, minimum=minimum, not_worse_than_current=not_worse)
        rule = PipelineRule(
            name=name, dataset_prefix=dataset, model_name=model, recipe=recipe.model_dump(), gate=gate.model_dump()
        )
        Pipelines(open_registry(settings).store).put(settings.tenant, rule)
    except (ValueError, RegistryError) as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"pipeline {name}: datasets {dataset}* → {model} ({architecture}), "
        f"promote to {alias} if {metric} ≥ {minimum}{' and not worse' if not_worse else ''}"
    )


@pipelines_app.command("list")
def pipelines_list() -> None:
    """Pipeline rules."""
    settings = StoreSettings()
    try:
        rules = Pipelines(open_registry(settings).store).list(settings.tenant)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    table = Table("rule", "datasets", "model", "recipe", "gate")
    for r in rules:
        table.add_row(r.name, f"{r.dataset_prefix}*", r.model_name, json.dumps(r.recipe), json.dumps(r.gate))
    console.print(table)


@pipelines_app.command("remove")
def pipelines_remove(name: Annotated[str, typer.Argument(help="rule name")]) -> None:
    """Remove a pipeline rule."""
    settings = StoreSettings()
    try:
        Pipelines(open_registry(settings).store).remove(settings.tenant, name)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"pipeline {name} removed")


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME@ALIAS")],
    input: Annotated[
        Path,
        typer.Option("--input", exists=True, dir_okay=False, help=".npy, .npz (array x) or .csv of float features"),
    ],
) -> None:
    """Send rows of features to the inference endpoint; prints the predicted classes."""
    if input.suffix == ".npy":
        x = np.load(input, allow_pickle=False)
    elif input.suffix == ".npz":
        with np.load(input, allow_pickle=False) as npz:
            x = npz["x"]
    else:
        x = np.loadtxt(input, delimiter=",", dtype=np.float32, ndmin=2)
    client = Client.from_settings()
    try:
        logits = client.predict(model, np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        labels = client.metadata(model)["parameters"].get("labels") or []
    except FermionError as exc:
        raise _fail(str(exc)) from exc
    pred = logits.argmax(axis=1)
    console.print_json(json.dumps([labels[i] if i < len(labels) else int(i) for i in pred]))


def main() -> None:
    """Entry point of the `fermion` script."""
    app()
