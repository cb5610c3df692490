"""Data in, training out, predictions back: upload, train, sweep, predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fermion.client import Client, FermionError

from .console import console
from .follow import follow_job


def upload(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help=".npz (x, y), .csv with a header, .zip/.tar of pictures")
    ],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file's stem)")] = None,
) -> None:
    """Upload a dataset; prints its stored reference."""
    console.print_json(json.dumps(Client.from_settings().upload(file, name)))


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
    workers: Annotated[int, typer.Option(help="data-parallel ranks for this one job (torch.distributed)")] = 1,
    image_size: Annotated[str | None, typer.Option(help="pictures: resize to SIDE or HEIGHTxWIDTH")] = None,
    channels: Annotated[int | None, typer.Option(help="pictures: 1 (grayscale) or 3 (RGB)")] = None,
    resize: Annotated[str | None, typer.Option(help="pictures: nearest, bilinear, bicubic or lanczos")] = None,
    crop_padding: Annotated[int, typer.Option(help="augment pictures: pad and crop back at random")] = 0,
    flip: Annotated[bool, typer.Option(help="augment pictures: mirror at random")] = False,
    rotation: Annotated[float, typer.Option(help="augment pictures: rotate up to this many degrees")] = 0.0,
) -> None:
    """Publish a training request (for a dataset of pictures, optionally with an image contract)."""
    image = _image_contract(image_size, channels, resize)
    augment: dict[str, Any] = {"crop_padding": crop_padding, "flip": flip, "rotation": rotation}
    extra: dict[str, Any] = {}
    if image:
        extra["image"] = image
    if crop_padding or flip or rotation:
        extra["augment"] = augment
    client = Client.from_settings()
    job = client.train(
        model,
        dataset,
        sha256=sha256,
        architecture=architecture,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        label_column=label_column,
        workers=workers,
        **extra,
    )
    console.print(f"job {job}")
    if follow:
        result = follow_job(client, job, epochs)
        console.print(f"{model} version {result.data.version}: {result.data.metrics}")


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
    try:
        trials = [
            {"architecture": architecture, "epochs": int(e), "learning_rate": float(lr), "label_column": label_column}
            for e in epochs.split(",")
            for lr in learning_rates.split(",")
        ]
    except ValueError as exc:
        raise FermionError(f"--epochs and --learning-rates take comma-separated numbers: {exc}") from exc
    out = Client.from_settings().sweep(
        model, dataset, trials, metric=metric, gate={"alias": alias, "metric": metric, "minimum": minimum}
    )
    console.print(f"sweep {out['sweep_id']}: {len(trials)} trials; the best by {metric} goes to {alias} if ≥ {minimum}")


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
    model: Annotated[str, typer.Argument(help="NAME or NAME@ALIAS")],
    inputs: Annotated[
        list[Path],
        typer.Option(
            "--input",
            exists=True,
            help=".npy, .npz (array x) or .csv of float features; or pictures (.png/.jpg, repeat --input, or a folder)",
        ),
    ],
) -> None:
    """Send rows of features, or pictures, to the inference endpoint; prints the predicted classes."""
    pictures = _pictures(inputs)
    if pictures:
        found = Client.from_settings().predict_pictures(model, pictures)
        answer = [
            {"file": str(p), "label": r["label"], "probability": round(r["probability"], 6)}
            for p, r in zip(pictures, found, strict=True)
        ]
        console.print_json(json.dumps(answer))
        return
    if len(inputs) != 1 or inputs[0].is_dir():
        raise FermionError("give one file of features (.npy, .npz, .csv), or pictures")
    input = inputs[0]
    if input.suffix == ".npy":
        x = np.load(input, allow_pickle=False)
    elif input.suffix == ".npz":
        with np.load(input, allow_pickle=False) as npz:
            x = npz["x"]
    else:
        x = np.loadtxt(input, delimiter=",", dtype=np.float32, ndmin=2)
    client = Client.from_settings()
    logits = client.predict(model, np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    labels = client.metadata(model)["parameters"].get("labels") or []
    pred = logits.argmax(axis=1)
    console.print_json(json.dumps([labels[i] if i < len(labels) else int(i) for i in pred]))


def _pictures(inputs: list[Path]) -> list[Path]:
    """The pictures the inputs name: picture files as given, folders' pictures in sorted order."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES))
        elif path.suffix.lower() in PICTURE_SUFFIXES:
            found.append(path)
    return found
