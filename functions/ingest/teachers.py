"""A distillation's teacher, checked at the door: it exists, and it takes what the dataset holds.

A teacher that does not exist, or whose inputs do not match the dataset (feature count, picture
shape), is a 400 naming the mismatch before anything is queued. The teacher is pinned to
NAME:VERSION, so the job learns from the version that was checked even if an alias moves; a
picture teacher's image contract becomes the recipe's where the request left it out.
"""

from __future__ import annotations

import math

from fermion.events import DatasetRef, ImageContract, Recipe
from fermion.model_store import DatasetStore, Manifest, Registry, dataset_key
from fermion.model_store import NotFound as StoreNotFound

from .archives import npz_headers
from .datasets import NO_LIMITS
from .errors import BadRequest
from .label_columns import csv_header


def check_teacher(registry: Registry, datasets: DatasetStore, tenant: str, ref: DatasetRef, recipe: Recipe) -> Recipe:
    """`recipe` with its teacher pinned (and a picture teacher's contract filled in); BadRequest on a mismatch."""
    spec = recipe.distill
    if spec is None:
        return recipe
    try:
        teacher = registry.lookup(tenant, spec.teacher)
    except StoreNotFound as exc:
        raise BadRequest(f"teacher {spec.teacher!r} does not exist: {exc}") from exc
    named = f"teacher {teacher.name}:{teacher.version}"
    takes = [int(d) for d in teacher.signature.inputs[0].shape[1:]] if teacher.signature.inputs else []
    update: dict[str, object] = {"distill": spec.model_copy(update={"teacher": f"{teacher.name}:{teacher.version}"})}
    if ref.format in ("zip", "tar"):
        update["image"] = _picture_contract(named, teacher, takes, recipe.image, ref.name)
    else:
        features = _features(datasets, tenant, ref)
        if len(takes) != 1 or (takes[0] > 0 and takes[0] != features):
            raise BadRequest(
                f"{named} takes inputs of shape {_shape(takes)}; dataset {ref.name!r} has rows of {features} features"
            )
    return recipe.model_copy(update=update)


def _picture_contract(
    named: str, teacher: Manifest, takes: list[int], asked: ImageContract | None, dataset: str
) -> ImageContract:
    if teacher.image is None or len(takes) != 3:
        raise BadRequest(f"{named} takes rows of features {_shape(takes)}; dataset {dataset!r} holds pictures")
    contract = asked or ImageContract.model_validate({**teacher.image, "mean": None, "std": None})
    have = [contract.height, contract.width, contract.channels]
    if any(t > 0 and t != h for t, h in zip(takes, have, strict=True)):
        raise BadRequest(
            f"{named} takes pictures of {_shape(takes)} (height, width, channels); the request makes them {have}"
        )
    return contract


def _features(datasets: DatasetStore, tenant: str, ref: DatasetRef) -> int:
    """The feature count of a stored npz (x's columns, flattened) or csv (every column but the label)."""
    if ref.format == "csv":
        return len(csv_header(datasets, tenant, ref)) - 1
    data, _ = datasets.store.get(dataset_key(tenant, ref.name, ref.sha256, ref.format))
    shape = npz_headers(data, NO_LIMITS)["x"].shape
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def _shape(dims: list[int]) -> str:
    return "[batch, " + ", ".join(str(d) if d > 0 else "?" for d in dims) + "]"
