"""One training job, start to registered version: fetch → train → export → parity → register."""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fermion.compile import INPUT_NAME, OUTPUT_NAME, compile_variants
from fermion.events import TrainingRequested
from fermion.model_store import DatasetStore, Draft, Lineage, Manifest, Registry, Signature, TensorSpec

from .train import ProgressFn, load_dataset, train

log = logging.getLogger(__name__)


def code_version() -> str:
    """The installed fermion version, recorded in every manifest."""
    try:
        return version("fermion")
    except PackageNotFoundError:
        return "unknown"


# How far the clocks that stamp events and manifests may disagree.
CLOCK_SKEW = timedelta(hours=1)


def find_registered(registry: Registry, event: TrainingRequested) -> Manifest | None:
    """The version an earlier delivery of this same event already registered, if any.

    Reads manifests from the newest down and stops at the first one written before the event
    existed (less the clock skew): a job claims its version after it receives its event, and
    versions are claimed in order, so that version and every older one belong to other events.
    The cost is the versions registered since the event, not the model's whole history.
    """
    name = event.data.model_name
    oldest_possible = event.time - CLOCK_SKEW
    for v in reversed(registry.versions(event.tenant, name)):
        manifest = registry.manifest(event.tenant, name, v)
        if manifest.lineage.training_event_id == event.id:
            return manifest
        if manifest.created_at < oldest_possible:
            return None
    return None


def run_job(
    event: TrainingRequested,
    registry: Registry,
    *,
    on_epoch: ProgressFn | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    accuracy_budget: float = 0.01,
) -> Manifest:
    """Train, compile, verify and register the model the event asks for."""
    request = event.data
    dataset = request.dataset
    with tempfile.TemporaryDirectory(prefix="fermion-job-") as tmp:
        path = DatasetStore(registry.store).fetch(
            event.tenant, dataset.name, dataset.sha256, dataset.format, Path(tmp) / f"data.{dataset.format}"
        )
        ds = load_dataset(path, dataset.format, request.recipe.label_column, request.recipe.image)
    trained = train(ds, request.recipe, on_epoch)
    compiled = compile_variants(
        trained.module,
        trained.x_test,
        trained.y_test,
        calibration=trained.x_calibration,
        budget=accuracy_budget,
        atol=atol,
        rtol=rtol,
    )
    features = [int(d) for d in trained.x_test.shape[1:]]  # [n] for rows, [H, W, C] for pictures
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, *features])],
            outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, len(trained.labels)])],
        ),
        labels=trained.labels,
        variants={name: v["file"] for name, v in compiled.variants.items()},
        metrics=trained.metrics,
        image=trained.image.model_dump() if trained.image is not None else None,
        lineage=Lineage(
            training_event_id=event.id,
            dataset_sha256=dataset.sha256,
            dataset_uri=dataset.uri,
            recipe=request.recipe.model_dump(),
            code_version=code_version(),
        ),
        compile_report={**compiled.report, "train_seconds": round(trained.duration_s, 3)},
    )
    return registry.register(event.tenant, request.model_name, compiled.files, draft)
