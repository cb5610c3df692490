"""An edge bundle built from a registered version: run as its own process, never in the ingest server's.

    python -m fermion.functions.ingest.edge_build OUT.tar < request.json

Pruning and fine-tuning are torch (`compile/edge.py`), and the ingest server never imports torch
(tests/unit/test_layers.py), so `edge_api.py` runs this module as a child process: the request
(tenant, reference, options) comes on stdin, the archive goes to OUT.tar, and the outcome is one
JSON line on stdout, `{"ok": true}` or `{"error": KIND, "message": ...}` (KINDS below).

The served fp32 graph is the starting point. When the run's dataset is still in the store, the
recipe's architecture is rebuilt, loaded with the version's weights, pruned and fine-tuned on the
same training split, and judged on the same held-out split the version was; otherwise pruning runs
on the graph's weights and the accuracy is measured only if asked not to be required.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fermion.events import ImageContract, Recipe
from fermion.model_store import (
    DatasetStore,
    InvalidName,
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

if TYPE_CHECKING:  # torch comes with these: imported when a build runs
    from fermion.compile.edge import EdgeBundle, EdgeData, EdgeOptions

# What a failed build reports, for edge_api.py to answer with.
KINDS = ("refused", "invalid", "not_found", "unavailable", "missing")


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
            # Loaded as the trainer loaded it: pictures as pixels under the version's contract, the same split.
            ds = load_dataset(
                path,
                fmt,
                recipe.label_column,
                _image(manifest, recipe),
                task=recipe.task,
                test_fraction=recipe.test_fraction,
                seed=recipe.seed,
            )
        except (NotFound, ObjectNotFound, DatasetError):
            return None
    if ds.labels != manifest.labels:
        return None
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    return EdgeData(ds.x[train_idx], ds.y[train_idx], ds.x[test_idx], ds.y[test_idx]), recipe


def _image(manifest: Manifest, recipe: Recipe) -> ImageContract | None:
    """A picture model's contract as it was resolved at training (the recipe's, for older versions)."""
    return ImageContract.model_validate(manifest.image) if manifest.image else recipe.image


def _module(architecture: str, data: EdgeData, manifest: Manifest, hidden: int | None) -> Any:
    """The recipe's network rebuilt as the trainer built it (a picture model: its input layer first)."""
    from fermion.training.architectures import build

    if not manifest.image:
        return build(architecture, data.x_train, len(manifest.labels), hidden)
    import torch
    from torch import nn

    from fermion.training.pictures import ImageInput

    pre = ImageInput(ImageContract.model_validate(manifest.image))
    with torch.no_grad():  # the architecture sizes itself on normalised N x C x H x W images
        net = build(architecture, pre(torch.from_numpy(data.x_train)).numpy(), len(manifest.labels), hidden)
    return nn.Sequential(pre, net)


def refusal(manifest: Manifest) -> str | None:
    """Why this version cannot become an edge bundle (None: it can); the ingest asks before any build."""
    if manifest.features is not None:
        return (
            f"model {manifest.name} version {manifest.version} is a table model: it takes one input per column "
            f"({len(manifest.signature.inputs)} of them, categories as text), and edge bundles take models with "
            "one input tensor (npz and picture datasets); serve it over HTTP (:predict or OIP v2) instead"
        )
    if len(manifest.signature.inputs) != 1 or len(manifest.signature.outputs) != 1:
        return "edge bundles take models with one input and one output"
    return None


def _contract(manifest: Manifest) -> dict[str, Any]:
    (inp,), (out,) = manifest.signature.inputs, manifest.signature.outputs
    if manifest.image:
        return {
            "input": {"name": inp.name, "dtype": "float32", "shape": inp.shape},
            "preprocessing": "pictures resized and laid out as the image contract says, pixels 0-255 "
            "(scaling and normalisation are inside the graph)",
            "image": manifest.image,
            "output": {"name": out.name, "dtype": "float32", "shape": out.shape, "labels": manifest.labels},
            "postprocessing": "argmax over the output row; the class is labels[argmax]",
        }
    return {
        "input": {"name": inp.name, "dtype": "float32", "shape": inp.shape},
        "preprocessing": "none outside the model: rows of raw features as the dataset held them "
        "(standardisation fitted on the training split is inside the graph)",
        "output": {"name": out.name, "dtype": "float32", "shape": out.shape, "labels": manifest.labels},
        "postprocessing": "argmax over the output row; the class is labels[argmax]",
    }


def export_edge(
    ref: str, options: EdgeOptions, *, store: StoreSettings, signing: SigningSettings, tenant: str | None = None
) -> EdgeBundle:
    """Build the signed edge bundle of the version `ref` names (NAME, NAME:VERSION or NAME@ALIAS)."""
    from fermion.compile import CompileError
    from fermion.compile.edge import build_bundle, load_onnx_weights

    registry = open_registry(store)
    manifest = registry.lookup(tenant or store.tenant, ref)
    if (why := refusal(manifest)) is not None:
        raise CompileError(why)
    fp32 = registry.fetch(manifest).read_bytes()
    found = _run_data(registry, manifest)
    data = found[0] if found else None
    module = None
    if found and options.prune > 0:
        rebuilt = _module(found[1].architecture, found[0], manifest, found[1].hidden)
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


def build(request: dict[str, Any], out: Path) -> dict[str, Any]:
    """Build the bundle `request` asks for into `out`; the outcome line (`{"ok": true}` or an error)."""
    try:
        from fermion.compile import CompileError
        from fermion.compile.edge import BudgetExceeded, EdgeOptions
    except ModuleNotFoundError as exc:  # a serving install: no torch or onnx here
        return {"error": "missing", "message": f"edge bundles are built with {exc.name}, which is not installed"}
    try:
        bundle = export_edge(
            request["ref"],
            EdgeOptions(**request["options"]),
            store=StoreSettings(),
            signing=SigningSettings(),
            tenant=request["tenant"],
        )
    except BudgetExceeded as exc:
        return {"error": "refused", "message": f"refused: {exc}"}
    except (CompileError, InvalidName) as exc:
        return {"error": "invalid", "message": str(exc)}
    except NotFound as exc:
        return {"error": "not_found", "message": str(exc)}
    except RegistryError as exc:
        return {"error": "unavailable", "message": f"model registry error: {exc}"}
    out.write_bytes(bundle.archive)
    return {"ok": True}


def main() -> None:
    """The child process: a request on stdin, the archive to argv[1], the outcome on stdout."""
    outcome = build(json.loads(sys.stdin.read()), Path(sys.argv[1]))
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
