"""`fermion models ...`: the model registry, through the ingest function's control plane."""

from __future__ import annotations

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
    models = Client.from_settings().models()
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
    client = Client.from_settings()
    name, _, version = ref.partition(":")
    if not version:
        version = str(max(v["version"] for v in client.versions(name)["versions"]))
    if not version.isdigit():
        raise FermionError(f"{ref!r}: give NAME or NAME:VERSION with a version number")
    emit(client.manifest(name, int(version)), output)


@models_app.command("push")
def models_push(
    name: Annotated[str, typer.Argument(help="model name to register")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="an .onnx file (external data beside it)")],
    labels: Annotated[str | None, typer.Option(help="comma-separated class names, in output order")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Upload your own ONNX file; ingest checks it and registers it as the next version of NAME."""
    name = model_name(name)
    out = Client.from_settings().push(name, file, labels=labels.split(",") if labels else None)
    if output is not Output.table:
        return emit(out, output)
    files = ", ".join(f"{f} {size} B" for f, size in out["files"].items())
    say(f"registered {name} version {out['version']} ({files})")
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
) -> None:
    """Point an alias at a version (compare-and-swap; publishes models.promoted)."""
    say(_moved(Client.from_settings().promote(name, version, alias=alias, expected_version=expected)))


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Option(help="alias to roll back")] = "production",
) -> None:
    """Point an alias back at the version it held before its last move."""
    say(_moved(Client.from_settings().rollback(name, alias=alias)))


@models_app.command("unalias")
def models_unalias(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Argument(help="alias to delete")],
) -> None:
    """Delete an alias."""
    Client.from_settings().delete_alias(name, alias)
    say(f"{name}@{alias} deleted")
