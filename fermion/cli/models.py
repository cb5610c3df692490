"""`fermion models ...`: the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fermion.client import Client, FermionError
from fermion.model_store import Draft, Lineage, Signature, StoreSettings, TensorSpec, open_registry

from .console import console

models_app = typer.Typer(help="The model registry.", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """List models with their versions and aliases."""
    settings = StoreSettings()
    registry = open_registry(settings)
    table = Table("model", "versions", "aliases")
    for name in registry.models(settings.tenant):
        info = registry.describe(settings.tenant, name)
        aliases = ", ".join(f"{a}→{v}" for a, v in sorted(info["aliases"].items()))
        table.add_row(name, ", ".join(map(str, info["versions"])), aliases)
    console.print(table)


@models_app.command("versions")
def models_versions(name: Annotated[str, typer.Argument(help="model name")]) -> None:
    """A model's versions with their metrics and lineage."""
    settings = StoreSettings()
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
    console.print(table)


@models_app.command("describe")
def models_describe(ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")]) -> None:
    """Print a version's manifest: files, signature, metrics, lineage, compile report."""
    settings = StoreSettings()
    console.print_json(open_registry(settings).lookup(settings.tenant, ref).model_dump_json())


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
    except InvalidModel as exc:
        raise FermionError(f"refused {file}: {exc}") from exc
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
    out = Client.from_settings().promote(name, version, alias=alias, expected_version=expected)
    console.print(f"{name}@{alias}: {out['previous_version']} → {out['version']}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Option(help="alias to roll back")] = "production",
) -> None:
    """Point an alias back at the version it held before its last move."""
    out = Client.from_settings().rollback(name, alias=alias)
    console.print(f"{name}@{alias}: {out['previous_version']} → {out['version']}")


@models_app.command("unalias")
def models_unalias(
    name: Annotated[str, typer.Argument(help="model name")],
    alias: Annotated[str, typer.Argument(help="alias to delete")],
) -> None:
    """Delete an alias."""
    Client.from_settings().delete_alias(name, alias)
    console.print(f"{name}@{alias} deleted")
