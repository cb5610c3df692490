"""`fermion models export NAME[:VERSION|@ALIAS] --edge`: a registered version → one signed edge bundle.

The served fp32 graph is the starting point. When the run's dataset is still in the store, the
recipe's architecture is rebuilt, loaded with the version's weights, pruned and fine-tuned on the
same training split, and judged on the same held-out split the version was; otherwise pruning runs
on the graph's weights and the accuracy is measured only if asked not to be required.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from fermion.events import Recipe
from fermion.model_store import (
    DatasetStore,
    Manifest,
    NotFound,
    ObjectNotFound,
    Registry,
    RegistryError,
    StoreSettings,
    dataset_format,
    open_registry,
)
from fermion.model_store.settings import SigningSettings
from fermion.model_store.signing import SigningKey

if TYPE_CHECKING:  # torch comes with these: imported when an export runs, not when the CLI starts
    from fermion.compile.edge import EdgeBundle, EdgeData, EdgeOptions

console = Console()


def _run_data(registry: Registry, manifest: Manifest) -> tuple[EdgeData, Recipe] | None:
    """The version's own training and held-out splits, if its dataset is still in the store."""
    from fermion.compile.edge import EdgeData
    from fermion.training.data import load_dataset, split
    from fermion.training.errors import DatasetError

    lineage = manifest.lineage
    if not (lineage.dataset_sha256 and lineage.dataset_uri and lineage.recipe):
        return None
    recipe = Recipe.model_validate(lineage.recipe)
    name, filename = lineage.dataset_uri.rstrip("/").split("/")[-2:]
    fmt = dataset_format(filename.rsplit(".", 1)[-1])
    if fmt is None:
        return None
    with tempfile.TemporaryDirectory(prefix="fermion-export-") as tmp:
        try:
            path = DatasetStore(registry.store).fetch(
                manifest.tenant, name, lineage.dataset_sha256, fmt, Path(tmp) / filename
            )
            ds = load_dataset(path, fmt, recipe.label_column)
        except (NotFound, ObjectNotFound, DatasetError):
            return None
    if ds.labels != manifest.labels:
        return None
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    return EdgeData(ds.x[train_idx], ds.y[train_idx], ds.x[test_idx], ds.y[test_idx]), recipe


def _contract(manifest: Manifest) -> dict[str, Any]:
    (inp,), (out,) = manifest.signature.inputs, manifest.signature.outputs
    return {
        "input": {"name": inp.name, "dtype": "float32", "shape": inp.shape},
        "preprocessing": "none outside the model: rows of raw features as the dataset held them "
        "(standardisation fitted on the training split is inside the graph)",
        "output": {"name": out.name, "dtype": "float32", "shape": out.shape, "labels": manifest.labels},
        "postprocessing": "argmax over the output row; the class is labels[argmax]",
    }


def export_edge(ref: str, options: EdgeOptions, *, store: StoreSettings, signing: SigningSettings) -> EdgeBundle:
    """Build the signed edge bundle of the version `ref` names (NAME, NAME:VERSION or NAME@ALIAS)."""
    from fermion.compile import CompileError
    from fermion.compile.edge import build_bundle, load_onnx_weights

    registry = open_registry(store)
    manifest = registry.lookup(store.tenant, ref)
    if len(manifest.signature.inputs) != 1 or len(manifest.signature.outputs) != 1:
        raise CompileError("edge bundles take models with one input and one output")
    fp32 = registry.fetch(manifest).read_bytes()
    found = _run_data(registry, manifest)
    data = found[0] if found else None
    module = None
    if found and options.prune > 0:
        from fermion.training.architectures import build

        rebuilt = build(found[1].architecture, found[0].x_train, len(manifest.labels))
        # When the graph's weights do not map onto the recipe's module, the graph itself is pruned.
        module = rebuilt if load_onnx_weights(rebuilt, fp32) else None
    key = SigningKey.load_or_create(signing.key_path)
    source = {
        "tenant": manifest.tenant,
        "name": manifest.name,
        "version": manifest.version,
        "content_sha256": manifest.content_sha256,
        "model_sha256": manifest.files["model.onnx"].sha256,
        "dataset_sha256": manifest.lineage.dataset_sha256 if data is not None else None,
    }
    return build_bundle(
        fp32,
        contract=_contract(manifest),
        source=source,
        options=options,
        sign=lambda data: (key.sign(data), key.public_key),
        module=module,
        data=data,
    )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def export_command(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the bundle")],
    edge: Annotated[bool, typer.Option("--edge", help="a signed edge bundle with its runner")] = False,
    prune: Annotated[float, typer.Option(min=0.0, max=0.95, help="fraction of weights to prune")] = 0.0,
    quantize: Annotated[str, typer.Option(help="int8 or none")] = "none",
    format: Annotated[str, typer.Option("--format", help="ort (minimal builds) or onnx")] = "ort",
    accuracy_budget: Annotated[float, typer.Option(help="max accuracy drop vs the served version")] = 0.01,
    no_accuracy_check: Annotated[bool, typer.Option("--no-accuracy-check", help="ship unmeasured")] = False,
    max_bytes: Annotated[int | None, typer.Option(help="refuse a bundle larger than this")] = None,
    finetune_epochs: Annotated[int, typer.Option(min=0, help="fine-tune epochs after pruning")] = 3,
) -> None:
    """Export a version as a signed edge bundle (pruned, quantised, ORT format, with its runner)."""
    if not edge:
        console.print("[bold red]error:[/] only edge bundles are exported for now: add --edge")
        raise typer.Exit(1)
    if quantize not in ("int8", "none") or format not in ("ort", "onnx"):
        console.print("[bold red]error:[/] --quantize takes int8 or none; --format takes ort or onnx")
        raise typer.Exit(1)
    from fermion.compile import CompileError
    from fermion.compile.edge import BudgetExceeded, EdgeOptions

    q: Literal["none", "int8"] = "int8" if quantize == "int8" else "none"
    options = EdgeOptions(
        prune=prune,
        quantize=q,
        format="onnx" if format == "onnx" else "ort",
        accuracy_budget=None if no_accuracy_check else accuracy_budget,
        max_bytes=max_bytes,
        finetune_epochs=finetune_epochs,
    )
    try:
        bundle = export_edge(ref, options, store=StoreSettings(), signing=SigningSettings())
    except BudgetExceeded as exc:
        console.print(f"[bold red]refused:[/] {exc}")
        raise typer.Exit(1) from exc
    except (CompileError, RegistryError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    _write(output, bundle.archive)
    summary = {
        "bundle": str(output),
        "bytes": len(bundle.archive),
        "sizes": bundle.manifest["sizes"],
        "accuracy": bundle.manifest["accuracy"],
        "cpu_latency_ms": bundle.manifest["cpu_latency_ms"],
        "signing_key": str(SigningSettings().key_path),
        "public_key": SigningKey.load(SigningSettings().key_path).public_key.hex(),
    }
    console.print_json(json.dumps(summary))


def register(models_app: typer.Typer) -> None:
    """Add `export` to the `fermion models` group."""
    models_app.command("export")(export_command)
