"""A classic job (scikit-learn, XGBoost, LightGBM): fetch → fit → convert → parity → register.

The same fate as a torch job: the version is registered under the event's claim (so a redelivery
makes no second version) and signed by the registry; a graph that disagrees with the fitted
estimator on the held-out rows fails the job (ParityError) and is never registered.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fermion.compile.classic import check_parity, to_onnx
from fermion.compile.validate import validate_onnx
from fermion.events import TrainingRequested
from fermion.model_store import DatasetStore, Draft, Lineage, Manifest, Registry, Signature, TensorSpec, code_version
from fermion.model_store.profiles import Profile, build_profile
from fermion.training.classic import Fitted, fit
from fermion.training.data import Dataset, load_dataset
from fermion.training.errors import DatasetError, PermanentJobError
from fermion.training.loop import ProgressFn

PROFILE_ROWS = 20_000


def run_classic_job(
    event: TrainingRequested, registry: Registry, *, on_epoch: ProgressFn | None = None, atol: float = 1e-4
) -> Manifest:
    """Fit, convert, verify and register the classic estimator the event's recipe names."""
    request = event.data
    dataset, recipe = request.dataset, request.recipe
    if f"datasets/{event.tenant}/" not in dataset.uri:
        raise DatasetError(f"dataset {dataset.uri} lies outside tenant {event.tenant!r}; a job reads only its own")
    if recipe.workers > 1 or recipe.distill is not None:
        raise PermanentJobError(f"{recipe.architecture!r} trains on one worker without a teacher")
    with tempfile.TemporaryDirectory(prefix="fermion-job-") as tmp:
        path = DatasetStore(registry.store).fetch(
            event.tenant, dataset.name, dataset.sha256, dataset.format, Path(tmp) / f"data.{dataset.format}"
        )
        ds = load_dataset(path, dataset.format, recipe.label_column, recipe.image)

    def done(loss: float, metrics: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(1, 1, loss, metrics)

    fitted = fit(ds, recipe, done)
    try:
        graph = to_onnx(fitted.estimator, int(ds.x.shape[1]))
    except ImportError as exc:  # a trainer without the classic extra: retrying cannot help
        raise PermanentJobError(str(exc)) from exc
    parity = check_parity(fitted.estimator, graph, fitted.x_test, atol=atol)
    with tempfile.TemporaryDirectory(prefix="fermion-classic-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(graph)
        checked = validate_onnx(path)  # what a push must pass, so a served classic graph is a pushable one
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.inputs],
            outputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.outputs],
        ),
        labels=fitted.labels,
        metrics=fitted.metrics,
        lineage=Lineage(
            training_event_id=event.id,
            dataset_sha256=dataset.sha256,
            dataset_uri=dataset.uri,
            recipe=recipe.model_dump(),
            code_version=code_version(),
        ),
        compile_report={
            "source": "classic",
            "estimator": _describe(fitted),
            "opset": checked.opset,
            "node_count": checked.node_count,
            "parity": parity.as_dict(),
            "train_seconds": round(fitted.duration_s, 3),
        },
        profile=_profile(ds, fitted).model_dump(),
    )
    return registry.register(event.tenant, request.model_name, checked.files, draft, event_id=event.id)


def _describe(fitted: Fitted) -> str:
    steps = getattr(fitted.estimator, "steps", None)
    return " → ".join(type(s).__name__ for _, s in steps) if steps else type(fitted.estimator).__name__


def _profile(ds: Dataset, fitted: Fitted) -> Profile:
    """The drift monitor's reference: the training features and what the estimator predicts on them."""
    rows = ds.x
    if len(rows) > PROFILE_ROWS:
        rows = rows[np.random.default_rng(0).choice(len(rows), PROFILE_ROWS, replace=False)]
    predicted = np.asarray(fitted.estimator.predict_proba(rows)).argmax(axis=1)
    return build_profile(rows, predicted, len(ds.labels))
