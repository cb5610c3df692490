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
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help=".npz (x, y), .csv with a header, .zip/.tar of pictures")
    ],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file's stem, normalised)")] = None,
    presigned: Annotated[
        bool | None,
        typer.Option(
            "--presigned/--direct",
            help="PUT the file to S3 through a URL ingest signs (default: only past 4 MiB, Lambda's request limit)",
        ),
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload a dataset; prints the name it is stored under (`Iris.csv` → `iris`)."""
    ref = Client.from_settings().upload(file, name, presigned=presigned)
    if "key" in ref and output is Output.table:
        stored = f"{ref['size']} bytes put at {ref['key']}, sha256 {ref['sha256']}"
        say(f"dataset {ref['name']}: {stored}; announced once the bucket's drop handler stores it")
        return None
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
    hidden: Annotated[int | None, typer.Option(help="width of a built-in (mlp: units; cnn: channels)")] = None,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    label_column: Annotated[
        str | None, typer.Option(help="CSV label column (default: `label`, else `target`, else the last column)")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="tables: classification or regression (default: inferred from the label)")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
    workers: Annotated[int, typer.Option(help="data-parallel ranks for this one job (torch.distributed)")] = 1,
    image_size: Annotated[str | None, typer.Option(help="pictures: resize to SIDE or HEIGHTxWIDTH")] = None,
    channels: Annotated[int | None, typer.Option(help="pictures: 1 (grayscale) or 3 (RGB)")] = None,
    resize: Annotated[str | None, typer.Option(help="pictures: nearest, bilinear, bicubic or lanczos")] = None,
    crop_padding: Annotated[int, typer.Option(help="augment pictures: pad and crop back at random")] = 0,
    flip: Annotated[bool, typer.Option(help="augment pictures: mirror at random")] = False,
    rotation: Annotated[float, typer.Option(help="augment pictures: rotate up to this many degrees")] = 0.0,
    list_: Annotated[bool, typer.Option("--list", help="list the available architectures and exit")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Publish a training request (`--list`: every architecture a trainer can build; pictures: an image contract)."""
    if list_:
        return _architectures(output)
    if model is None or dataset is None:
        raise FermionError("train needs a MODEL name and --dataset (or --list)")
    model = model_name(model)
    extra: dict[str, Any] = {}
    if image := _image_contract(image_size, channels, resize):
        extra["image"] = image
    if crop_padding or flip or rotation:
        extra["augment"] = {"crop_padding": crop_padding, "flip": flip, "rotation": rotation}
    if workers > 1:
        extra["workers"] = workers
    if task is not None:
        if task not in ("classification", "regression"):
            raise FermionError(f"--task is classification or regression, not {task!r}")
        extra["task"] = task
    client = Client.from_settings()
    out = client.request_training(
        model,
        dataset,
        sha256=sha256,
        architecture=architecture,
        hidden=hidden,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        label_column=label_column,
        **extra,
    )
    if output is not Output.table:
        emit(out, output)
    else:
        label = f", label column {out['label_column']!r}" if out["dataset"]["format"] in ("csv", "parquet") else ""
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


def _image_contract(size: str | None, channels: int | None, resize: str | None) -> dict[str, object]:
    """The image contract the options give (empty: the trainer infers it from the pictures)."""
    contract: dict[str, object] = {}
    if size:
        height, _, width = size.lower().partition("x")
        if not height.isdigit() or not (width or height).isdigit():
            raise FermionError(f"--image-size must be SIDE or HEIGHTxWIDTH; got {size!r}")
        contract.update(height=int(height), width=int(width or height))
    if channels is not None:
        contract["channels"] = channels
    if resize:
        contract["resize"] = resize
    return contract


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def predict(
    model: Annotated[str, typer.Argument(help="NAME (its production alias), NAME@ALIAS or NAME:VERSION")],
    inputs: Annotated[
        list[Path],
        typer.Option(
            "--input",
            exists=True,
            help=".csv (header or not), .npy, .npz (x), .jsonl; or pictures (.png/.jpg, repeat, or a folder)",
        ),
    ],
    output: OutputOption = Output.json,
) -> None:
    """Send rows of features, or pictures, to the inference endpoint; prints the predicted class of each."""
    client = Client.from_settings()
    if pictures := _pictures(inputs):
        found = client.predict_pictures(model, pictures)
        answer = [
            {"file": str(p), "label": r["label"], "probability": round(r["probability"], 6)}
            for p, r in zip(pictures, found, strict=True)
        ]
        emit(answer, output, ("file", "label", "probability"), lambda a: [a["file"], a["label"], a["probability"]])
        return
    if len(inputs) != 1 or inputs[0].is_dir():
        raise FermionError("give one file of features (.csv, .npy, .npz, .jsonl), or pictures")
    x, header = read_rows(inputs[0])
    meta = client.metadata(model)
    x = fit_columns(x.reshape(len(x), -1), header, meta, inputs[0].name)
    logits = client.predict(model, x)
    labels = (meta.get("parameters") or {}).get("labels") or []
    pred = [labels[i] if i < len(labels) else int(i) for i in np.asarray(logits).argmax(axis=1)]
    if output is Output.table:
        emit(list(enumerate(pred)), output, ("row", "prediction"), list)
    else:
        emit(pred, output)


def _pictures(inputs: list[Path]) -> list[Path]:
    """The pictures the inputs name: picture files as given, folders' pictures in sorted order."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES))
        elif path.suffix.lower() in PICTURE_SUFFIXES:
            found.append(path)
    return found
