"""One training job, start to registered version: fetch → train → export → parity → register."""

from __future__ import annotations

import logging
import tempfile
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
        ds = load_dataset(path, dataset.format, request.recipe.label_column)
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
    n_features = int(trained.x_test.shape[1])
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, n_features])],
            outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, len(trained.labels)])],
        ),
        labels=trained.labels,
        variants={name: v["file"] for name, v in compiled.variants.items()},
        metrics=trained.metrics,
        lineage=Lineage(
            training_event_id=event.id,
            dataset_sha256=dataset.sha256,
            dataset_uri=dataset.uri,
            recipe=request.recipe.model_dump(),
            code_version=code_version(),
        ),
        compile_report={**compiled.report, "train_seconds": round(trained.duration_s, 3)},
    )
    # The event id is the claim: however many deliveries get here, the event becomes one version.
    return registry.register(event.tenant, request.model_name, compiled.files, draft, event_id=event.id)
