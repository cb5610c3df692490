"""Data in, training out, predictions back: upload, train, sweep, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fermion.client import Client, FermionError

from .console import Output, OutputOption, emit, say
from .follow import follow_job, follow_jobs
from .names import model_name
from .rows import fit_columns, read_rows


def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".npz (x, y) or .csv with a header")],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file's stem, normalised)")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload a dataset; prints the name it is stored under (`Iris.csv` → `iris`)."""
    ref = Client.from_settings().upload(file, name)
    if output is not Output.table:
        return emit(ref, output)
    given = name or file.stem
    renamed = f" (from {given!r}: names are lower case)" if ref["name"] != given else ""
    say(f"dataset {ref['name']}{renamed}: {ref['format']}, {ref['size']} bytes, sha256 {ref['sha256']}")
    return None


def _architectures(output: Output) -> None:
    emit(
        Client.from_settings().architectures(),
        output,
        ("architecture", "source", "description"),
        lambda a: [a["name"], a["source"], a["description"]],
    )


def train(
    model: Annotated[str | None, typer.Argument(help="model name to register")] = None,
    dataset: Annotated[str | None, typer.Option(help="name of an uploaded dataset")] = None,
    architecture: Annotated[str, typer.Option(help="see --list for every one, recipes included")] = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    label_column: Annotated[
        str | None, typer.Option(help="CSV label column (default: `label`, else `target`, else the last column)")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
    list_: Annotated[bool, typer.Option("--list", help="list the available architectures and exit")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Publish a training request (`--list`: every architecture a trainer can build)."""
    if list_:
        return _architectures(output)
    if model is None or dataset is None:
        raise FermionError("train needs a MODEL name and --dataset (or --list)")
    model = model_name(model)
    client = Client.from_settings()
    out = client.request_training(
        model,
        dataset,
        sha256=sha256,
        architecture=architecture,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        label_column=label_column,
    )
    if output is not Output.table:
        emit(out, output)
    else:
        label = f", label column {out['label_column']!r}" if out["dataset"]["format"] == "csv" else ""
        say(f"job {out['job_id']} ({model} on {out['dataset']['name']}{label})")
    if follow:
        result = follow_job(client, out["job_id"], epochs)
        say(f"{model} version {result.data.version}: {result.data.metrics}")
    return None


def sweep(
    model: Annotated[str, typer.Argument(help="model name to register the trials under")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded dataset")],
    architecture: str = "mlp",
    epochs: Annotated[str, typer.Option(help="comma-separated values to try")] = "20",
    learning_rates: Annotated[str, typer.Option(help="comma-separated values to try")] = "0.001,0.01",
    label_column: Annotated[str | None, typer.Option(help="as for train")] = None,
    metric: str = "macro_f1",
    alias: str = "production",
    minimum: float = 0.0,
    follow: Annotated[bool, typer.Option(help="show every trial's progress until all end")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Train every combination of the given epochs and learning rates; promote the best through the gate."""
    model = model_name(model)
    try:
        trials: list[dict[str, Any]] = [
            {"architecture": architecture, "epochs": int(e), "learning_rate": float(lr), "label_column": label_column}
            for e in epochs.split(",")
            for lr in learning_rates.split(",")
        ]
    except ValueError as exc:
        raise FermionError(f"--epochs and --learning-rates take comma-separated numbers: {exc}") from exc
    client = Client.from_settings()
    out = client.sweep(
        model, dataset, trials, metric=metric, gate={"alias": alias, "metric": metric, "minimum": minimum}
    )
    if output is not Output.table:
        emit(out, output)
    else:
        say(f"sweep {out['sweep_id']}: {len(trials)} trials; the best by {metric} goes to {alias} if ≥ {minimum}")
        for job, t in zip(out["trial_job_ids"], trials, strict=True):
            say(f"  {job}  epochs {t['epochs']}, learning rate {t['learning_rate']}")
    if follow:
        bars = [
            (j, f"epochs {t['epochs']} lr {t['learning_rate']}", t["epochs"])
            for j, t in zip(out["trial_job_ids"], trials, strict=True)
        ]
        outcomes = follow_jobs(client, bars)
        done = {j: o for j, o in outcomes.items() if o.type == "training.completed"}
        if not done:
            raise FermionError(f"sweep {out['sweep_id']}: no trial completed")
        say(f"sweep {out['sweep_id']}: {len(done)} of {len(trials)} trials completed")


def predict(
    model: Annotated[str, typer.Argument(help="NAME (its production alias), NAME@ALIAS or NAME:VERSION")],
    input: Annotated[
        Path,
        typer.Option(
            "--input", exists=True, dir_okay=False, help=".csv (with or without a header), .npy, .npz (x), .jsonl"
        ),
    ],
    output: OutputOption = Output.json,
) -> None:
    """Send rows of features to the inference endpoint; prints the predicted class of each row."""
    x, header = read_rows(input)
    client = Client.from_settings()
    meta = client.metadata(model)
    x = fit_columns(x.reshape(len(x), -1), header, meta, input.name)
    logits = client.predict(model, x)
    labels = (meta.get("parameters") or {}).get("labels") or []
    pred = [labels[i] if i < len(labels) else int(i) for i in np.asarray(logits).argmax(axis=1)]
    if output is Output.table:
        emit(list(enumerate(pred)), output, ("row", "prediction"), list)
    else:
        emit(pred, output)
