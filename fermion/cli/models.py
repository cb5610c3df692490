"""`fermion models ...`: the model registry, through the ingest function's control plane."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer

from fermion.client import Client, FermionError

from .console import Output, OutputOption, emit, say
from .names import model_name

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)


def _aliases(info: dict[str, Any]) -> str:
    return ", ".join(f"{a}→{v}" for a, v in sorted(info["aliases"].items()))


@models_app.command("list")
def models_list(output: OutputOption = Output.table) -> None:
    """List models with their versions and aliases."""
    with Client.from_settings() as client:
        models = client.models()
    emit(
        models,
        output,
        ("model", "versions", "aliases"),
        lambda m: [m["name"], ", ".join(map(str, m["versions"])), _aliases(m)],
    )


@models_app.command("versions")
def models_versions(
    name: Annotated[str, typer.Argument(help="model name")], output: OutputOption = Output.table
) -> None:
    """A model's versions with their metrics and lineage."""
    with Client.from_settings() as client:  # closed: a listing leaves no socket behind
        info = client.versions(name)
    if output is not Output.table:
        return emit(info, output)

    def row(v: dict[str, Any]) -> list[str]:
        m = v["metrics"]
        return [
            v["version"],
            str(v["created_at"])[:19].replace("T", " "),
            f"{m['accuracy']:.4f}" if "accuracy" in m else "-",
            f"{m['macro_f1']:.4f}" if "macro_f1" in m else "-",
            v["training_event_id"] or "-",
            v["content_sha256"][:16],
            v.get("teacher") or "-",  # a distilled student's teacher (issue 30); older ingests leave it out
        ]

    columns = ("version", "created", "accuracy", "macro-F1", "training event", "sha256", "teacher")
    emit(info["versions"], output, columns, row)
    return None


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION, or NAME for its newest version")],
    output: OutputOption = Output.json,
) -> None:
    """A version's manifest: files, signature, metrics, lineage, compile report."""
    name, _, version = ref.partition(":")
    with Client.from_settings() as client:
        if not version:
            version = str(max(v["version"] for v in client.versions(name)["versions"]))
        if not version.isdigit():
            raise FermionError(f"{ref!r}: give NAME or NAME:VERSION with a version number")
        manifest = client.manifest(name, int(version))
    emit(manifest, output)


@models_app.command("push")
def models_push(
    name: Annotated[str, typer.Argument(help="model name to register")],
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="an .onnx file (external data beside it)")
    ] = None,
    labels: Annotated[str | None, typer.Option(help="comma-separated class names, in output order")] = None,
    sklearn: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="a fitted scikit-learn pipeline saved with skops (.skops)"),
    ] = None,
    sample: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="--sklearn: rows (CSV, NPY) the parity runs on")
    ] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload your own ONNX file, or a scikit-learn pipeline (--sklearn) converted here; registers the next version."""
    name = model_name(name)
    if (file is None) == (sklearn is None):
        raise FermionError("give an .onnx FILE or --sklearn PIPELINE.skops, one of them")
    if sklearn is not None:
        return _push_sklearn(name, sklearn, sample, output)
    assert file is not None
    with Client.from_settings() as client:
        out = client.push(name, file, labels=labels.split(",") if labels else None)
    if output is not Output.table:
        return emit(out, output)
    files = ", ".join(f"{f} {size} B" for f, size in out["files"].items())
    say(f"registered {name} version {out['version']} ({files})")
    return None


def _push_sklearn(name: str, path: Path, sample: Path | None, output: Output) -> None:
    """Load the pipeline safely (skops, trusted types only), convert it, check parity, push it."""
    from fermion.compile.pipeline_file import UntrustedFile, load_pipeline

    from .convert import push_converted

    try:
        estimator = load_pipeline(path)
    except UntrustedFile as exc:
        raise FermionError(str(exc)) from exc
    with Client.from_settings() as client:
        out, done = push_converted(client, name, estimator, sample, {"source": "sklearn", "file": path.name})
    if output is not Output.table:
        return emit({**out, "parity": done.parity, "parity_rows": done.rows}, output)
    say(
        f"registered {name} version {out['version']} from {path.name}: probabilities within "
        f"{done.parity['max_abs_diff']:.2g} of scikit-learn's on {done.rows}"
    )
    return None


@models_app.command("import")
def models_import(
    name: Annotated[str, typer.Argument(help="model name to register")],
    source: Annotated[str, typer.Argument(help="mlflow:runs:/RUN/model, mlflow:models:/NAME/VERSION, or a folder")],
    tracking_uri: Annotated[str | None, typer.Option(help="the MLflow tracking server (default: MLflow's own)")] = None,
    sample: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="scikit-learn flavour: rows the parity runs on")
    ] = None,
    labels: Annotated[str | None, typer.Option(help="ONNX flavour: comma-separated class names")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Register an MLflow model (ONNX or scikit-learn flavour) as the next version, with its run's metrics."""
    from .tracking import import_model

    name = model_name(name)
    with Client.from_settings() as client:
        out = import_model(
            client, name, source, tracking_uri=tracking_uri, sample=sample, labels=labels.split(",") if labels else None
        )
    if output is not Output.table:
        return emit(out, output)
    said = ", ".join(f"{k} {v:.4f}" for k, v in sorted(out["metrics"].items())) or "no metrics"
    say(f"registered {name} version {out['version']} from {source} ({out['flavor']} flavour; {said})")
    return None


def _moved(out: dict[str, Any]) -> str:
    was = out["previous_version"]
    return f"{out['name']}@{out['alias']} → version {out['version']}" + (
        f" (was {was})" if was is not None else " (new alias)"
    )


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int, typer.Argument(help="version to point the alias at")],
    alias: Annotated[str, typer.Option(help="alias to move")] = "production",
    expected: Annotated[int | None, typer.Option(help="only if the alias still points at this version")] = None,
    output: OutputOption = Output.table,
    abort_rollout: Annotated[bool, typer.Option(help="end a rollout running on the alias (else refused)")] = False,
) -> None:
    """Point an alias at a version (compare-and-swap; publishes models.promoted); refused while a rollout runs."""
    with Client.from_settings() as client:
        moved = client.promote(name, version, alias=alias, expected_version=expected, abort_rollout=abort_rollout)
    _said(moved, output)


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Option(help="alias to roll back")] = "production",
    output: OutputOption = Output.table,
    abort_rollout: Annotated[bool, typer.Option(help="abort a rollout running on the alias (else refused)")] = False,
) -> None:
    """Point an alias back at the version it held before its last move; refused while a rollout runs."""
    with Client.from_settings() as client:
        _said(client.rollback(name, alias=alias, abort_rollout=abort_rollout), output)


def _said(out: dict[str, Any], output: Output) -> None:
    """An alias move: one line for people, the answer for scripts."""
    say(_moved(out)) if output is Output.table else emit(out, output)


@models_app.command("unalias")
def models_unalias(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Argument(help="alias to delete")],
) -> None:
    """Delete an alias."""
    with Client.from_settings() as client:
        client.delete_alias(name, alias)
    say(f"{name}@{alias} deleted")


@models_app.command("drift")
def models_drift(
    name: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[int | None, typer.Option(help="only this version's windows")] = None,
    limit: Annotated[int, typer.Option(help="the newest this many windows")] = 10,
    output: OutputOption = Output.table,
) -> None:
    """What the monitor judged of NAME's served inputs: recent windows per feature and the last alarm."""
    with Client.from_settings() as client:
        state = client.drift(name, version=version, limit=limit)
    if output is not Output.table:
        return emit(state, output)
    alarm = state["last_alarm"]
    say(f"last alarm: {_window(alarm)}: {_moved_features(alarm)}" if alarm else "last alarm: none")
    rows = [(w, f) for w in state["windows"] for f in w["psi"]]
    emit(
        rows,
        output,
        ("window", "feature", "PSI", "KS p-value", "moved"),
        lambda r: [_window(r[0]), r[1], f"{r[0]['psi'][r[1]]:.4f}", f"{r[0]['ks_pvalue'][r[1]]:.3g}", _mark(r)],
    )
    return None


def _window(w: dict[str, Any]) -> str:
    return f"v{w['version']} #{w['window']} {str(w['at'])[:19].replace('T', ' ')}"


def _moved_features(w: dict[str, Any]) -> str:
    moved = [f"{f} (PSI {w['psi'][f]:.3f}, KS p {w['ks_pvalue'][f]:.2g})" for f in w["features"]]
    if w["prediction_drift"]:
        moved.append(f"predictions (PSI {w['prediction_psi']:.3f})")
    return ", ".join(moved) or "nothing"


def _mark(row: tuple[dict[str, Any], str]) -> str:
    window, feature = row
    return "moved" if feature in window["features"] else "-"


@models_app.command("labels")
def models_labels(
    name: Annotated[str, typer.Argument(help="model name")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a CSV of request_id,label rows")],
    output: OutputOption = Output.table,
) -> None:
    """Submit the true labels of past predictions (by request id): the monitor's online accuracy."""
    labels: dict[str, str] = {}
    with file.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].strip() in ("", "request_id"):  # blank lines and a header
                continue
            if len(row) != 2:
                raise FermionError(f"{file.name}: each row is request_id,label; got {row!r}")
            labels[row[0].strip()] = row[1].strip()
    if not labels:
        raise FermionError(f"{file.name} holds no request_id,label rows")
    with Client.from_settings() as client:
        out = client.submit_labels(name, labels)
    if output is not Output.table:
        return emit(out, output)
    say(f"{out['labels']} labels of {name} submitted (event {out['event_id']})")
    return None
