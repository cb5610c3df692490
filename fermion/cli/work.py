"""Data in, training out, predictions back: upload, train, sweep, predict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from fermion.client import Client, FermionError
from fermion.events import ParamSpec
from fermion.training.catalog import CLASSIC

from . import predictions
from .console import Output, OutputOption, emit, note, say
from .datasets import print_profile
from .follow import follow_job, follow_jobs
from .names import model_name
from .rows import by_name, fit_columns, float_rows, ignored, known_names, read_rows


def upload(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help=".npz (x, y), .csv with a header, .parquet, .zip/.tar of pictures"
        ),
    ],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file's stem, normalised)")] = None,
    label_column: Annotated[str | None, typer.Option(help="tables: the label column (default: guessed)")] = None,
    task: Annotated[str | None, typer.Option(help="tables: classification or regression (default: guessed)")] = None,
    presigned: Annotated[
        bool | None,
        typer.Option(
            "--presigned/--direct",
            help="PUT the file to S3 through a URL ingest signs (default: only past 4 MiB, Lambda's request limit)",
        ),
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload a dataset; prints the name it is stored under (`Iris.csv` → `iris`) and a table's profile."""
    with Client.from_settings() as client:  # closed: its connection is not left to the garbage collector
        ref = client.upload(file, name, presigned=presigned, label_column=label_column, task=task)
    if "key" in ref and output is Output.table:
        stored = f"{ref['size']} bytes put at {ref['key']}, sha256 {ref['sha256']}"
        say(f"dataset {ref['name']}: {stored}; announced once the bucket's drop handler stores it")
        return None
    if output is not Output.table:
        return emit(ref, output)
    given = name or file.stem
    renamed = f" (from {given!r}: names are lower case)" if ref["name"] != given else ""
    say(f"dataset {ref['name']}{renamed}: {ref['format']}, {ref['size']} bytes, sha256 {ref['sha256']}")
    if ref.get("profile"):
        print_profile(ref["profile"])
    return None


def _architectures(output: Output) -> None:
    with Client.from_settings() as client:
        found = client.architectures()
    emit(
        found,
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
        result = follow_job(client, out["job_id"], 1 if architecture in CLASSIC else epochs)  # a fit is one step
        say(f"{model} version {result.data.version}: {result.data.metrics}")
    return None


def sweep(
    model: Annotated[str, typer.Argument(help="model name to register the winner under")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded dataset")],
    architecture: str = "mlp",
    epochs: Annotated[str, typer.Option(help="grid: comma-separated values to try; a search: the base value")] = "20",
    learning_rates: Annotated[str, typer.Option(help="grid: comma-separated values to try")] = "0.001,0.01",
    label_column: Annotated[str | None, typer.Option(help="as for train")] = None,
    metric: str = "macro_f1",
    alias: str = "production",
    minimum: float = 0.0,
    search: Annotated[str, typer.Option(help="grid, random or tpe (Optuna's samplers)")] = "grid",
    trials: Annotated[int, typer.Option("--trials", help="random/tpe: how many trials")] = 8,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="NAME=SPEC, repeatable: loguniform:1e-4:1e-1, uniform:A:B, int:5:30, choice:mlp,cnn (grid: choice)",
        ),
    ] = None,
    parallel: Annotated[int, typer.Option(help="trials in flight at once")] = 4,
    prune: Annotated[bool, typer.Option(help="stop trials behind the median (Optuna's median pruner)")] = True,
    follow: Annotated[bool, typer.Option(help="show every trial's progress, then the winner")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Search recipes (a grid, random or TPE); only the best trial is registered, then gated."""
    model = model_name(model)
    space = _space(param or [])
    if search not in ("grid", "random", "tpe"):
        raise FermionError(f"--search takes grid, random or tpe; got {search!r}")
    base: dict[str, Any] = {"architecture": architecture, "label_column": label_column}
    grid: list[dict[str, Any]] = []
    try:
        if search == "grid":
            grid = sweep_grid(base, epochs, learning_rates, space)
        else:
            base.update(epochs=int(epochs), learning_rate=float(learning_rates.split(",")[0]))
    except ValueError as exc:
        raise FermionError(f"--epochs and --learning-rates take comma-separated numbers: {exc}") from exc
    client = Client.from_settings()
    extra: dict[str, Any] = {} if search == "grid" else {"n_trials": trials, "space": space, "base": base}
    gate = {"alias": alias, "metric": metric, "minimum": minimum}
    out = client.sweep(
        model, dataset, grid, metric=metric, gate=gate, search=search, parallel=parallel, prune=prune, **extra
    )
    if output is Output.table:
        n = len(out["trial_job_ids"])
        say(
            f"sweep {out['sweep_id']}: {search}, {n} trials; "
            f"the best by {metric} is registered, to {alias} if ≥ {minimum}"
        )
        for job, t in zip(out["trial_job_ids"], grid, strict=False):
            say(f"  {job}  epochs {t['epochs']}, learning rate {t['learning_rate']}")
    elif not follow:
        emit(out, output)
    if follow:
        _follow_sweep(client, out, model, int(epochs.split(",")[0]), output)


def sweep_grid(base: dict[str, Any], epochs: str, learning_rates: str, space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the epochs, learning rates and choice parameters given."""
    grid = [
        {**base, "epochs": int(e), "learning_rate": float(lr)}
        for e in epochs.split(",")
        for lr in learning_rates.split(",")
    ]
    for name, spec in space.items():
        if spec["kind"] != "choice":
            raise FermionError(f"a grid takes choice:A,B,.. parameters; {name} is {spec['kind']}")
        grid = [{**t, name: c} for t in grid for c in spec["choices"]]
    return grid


def _space(params: list[str]) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for text in params:
        name, sep, spec = text.partition("=")
        if not sep or not name:
            raise FermionError(f"--param takes NAME=SPEC; got {text!r}")
        try:
            space[name.strip().replace("-", "_")] = ParamSpec.parse(spec.strip()).model_dump(exclude_defaults=True)
        except ValueError as exc:
            raise FermionError(f"--param {text}: {exc}") from exc
    return space


def _follow_sweep(client: Client, out: dict[str, Any], model: str, epochs: int, output: Output) -> None:
    """Bars for every trial and the winner, then the sweep's last line: its winner and the gate's decision."""
    bars = [(j, f"trial {i}", epochs) for i, j in enumerate(out["trial_job_ids"])]
    follow_jobs(client, [*bars, (out["winner_job_id"], "winner", epochs)])
    record: dict[str, Any] = {}
    for _ in range(120):  # the winner's gate decision lands in the record just after its training ends
        record = client.sweep_record(out["sweep_id"], model)
        if record["status"] != "running":
            break
        time.sleep(0.5)
    if record.get("status") != "completed" or not record.get("winner"):
        raise FermionError(f"sweep {out['sweep_id']}: {record.get('error') or 'no winner'}")
    w, metric = record["winner"], record["metric"]
    states = [t["state"] for t in record["trials"]]
    summary = {
        "sweep_id": out["sweep_id"], "search": record["search"], "metric": metric, "winner": w["trial_job_id"],
        "value": w["value"], "params": w["params"], "version": w["version"], "promoted": w["promoted"],
        "reason": w["reason"], "trials": {s: states.count(s) for s in sorted(set(states))},
    }  # fmt: skip
    if output is not Output.table:
        return emit(summary, output)
    said = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in w["params"].items() if v is not None
    )
    verdict = "promoted" if w["promoted"] else "not promoted"
    pruned = f", {states.count('pruned')} pruned" if "pruned" in states else ""
    say(f"sweep {out['sweep_id']}: {states.count('complete')} of {len(states)} trials completed{pruned}")
    say(
        f"sweep {out['sweep_id']}: winner {w['trial_job_id']} ({said}) {metric} {w['value']:.4f} "
        f"→ {model} version {w['version']}, {verdict}: {w['reason']}"
    )
    return None


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
            help=".csv (header or not), .parquet, .npy, .npz (x), .jsonl (objects by column or input name, or lists); "
            "or pictures (.png/.jpg, repeat, or a folder)",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="write the predictions to a .csv or .parquet file")
    ] = None,
    output: OutputOption = Output.json,
) -> None:
    """Send rows, or pictures, to the inference endpoint; prints each row's prediction (and class probabilities)."""
    with Client.from_settings() as client:
        _predict(client, model, inputs, out, output)


def _predict(client: Client, model: str, inputs: list[Path], out: Path | None, output: Output) -> None:
    if pictures := _pictures(inputs):
        found = client.predict_pictures(model, pictures)
        answer = [
            {"file": str(p), "label": r["label"], "probability": round(r["probability"], 6)}
            for p, r in zip(pictures, found, strict=True)
        ]
        emit(answer, output, ("file", "label", "probability"), lambda a: [a["file"], a["label"], a["probability"]])
        return
    if len(inputs) != 1 or inputs[0].is_dir():
        raise FermionError("give one file of rows (.csv, .parquet, .npy, .npz, .jsonl), or pictures")
    if out is not None:
        predictions.check_out(out)
    meta = client.metadata(model)
    features = (meta.get("parameters") or {}).get("features")
    rows, header = read_rows(inputs[0], known_names(meta) if features else None)
    if features and header:
        ignored(features, header, inputs[0].name)
    if not by_name(meta, rows):  # a model on float features: the rows as its one input takes them
        rows = fit_columns(float_rows(rows, header, inputs[0].name), header, meta, inputs[0].name).tolist()
    found = predictions.per_row(client.predict_rows(model, rows))
    if out is not None:
        predictions.write(out, found)
        note(f"wrote {len(found)} predictions to {out}")
        if output is Output.table:
            return
    if output is Output.table:
        emit(list(enumerate(found)), output, ("row", "prediction", "probability"), predictions.table_row)
    else:
        emit(found, output)


def _pictures(inputs: list[Path]) -> list[Path]:
    """The pictures the inputs name: picture files as given, folders' pictures in sorted order."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES))
        elif path.suffix.lower() in PICTURE_SUFFIXES:
            found.append(path)
    return found
