"""One training job, start to registered version: fetch → train → export → parity → register."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fermion.compile import INPUT_NAME, OUTPUT_NAME, Compiled, compile_variants
from fermion.events import Recipe, TrainingRequested
from fermion.model_store import (
    MODEL_FILE,
    Draft,
    Lineage,
    Manifest,
    Registry,
    Signature,
    TensorSpec,
    code_version,
)
from fermion.model_store.features import LOGITS, PREDICTION, PROBABILITIES
from fermion.training.checkpoints import Checkpointer, CheckpointPolicy
from fermion.training.classic import is_classic
from fermion.training.data import Dataset
from fermion.training.distributed import DistributedOptions, train_distributed
from fermion.training.errors import DatasetError
from fermion.training.loop import ProgressFn, Trained, train
from fermion.training.profile import reference_profile

from .classic import run_classic_job
from .data import fetch_dataset
from .tablegraph import table_graphs
from .teaching import find_teacher, lesson, report, taught_recipe

log = logging.getLogger(__name__)


def run_job(
    event: TrainingRequested,
    registry: Registry,
    *,
    on_epoch: ProgressFn | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    accuracy_budget: float = 0.01,
    checkpoints: CheckpointPolicy | None = None,
    distributed: DistributedOptions | None = None,
) -> Manifest:
    """Train, compile, verify and register the model the event asks for.

    The training resumes from the job's newest checkpoint, if an earlier delivery left one; a
    recipe with `workers` > 1 trains with that many data-parallel ranks (training/distributed.py).
    """
    request = event.data
    dataset, recipe = request.dataset, request.recipe
    if is_classic(recipe.architecture):  # scikit-learn, XGBoost, LightGBM: no torch loop, no checkpoints
        return run_classic_job(event, registry, on_epoch=on_epoch, atol=atol)
    if f"datasets/{event.tenant}/" not in dataset.uri:  # the event names another tenant's data
        raise DatasetError(f"dataset {dataset.uri} lies outside tenant {event.tenant!r}; a job reads only its own")
    spec = recipe.distill
    teacher = find_teacher(registry, event.tenant, spec) if spec is not None else None
    if teacher is not None:
        recipe = taught_recipe(recipe, teacher)
    policy = checkpoints or CheckpointPolicy()
    checkpointer = Checkpointer.open(registry.store, event.tenant, event.id, policy)
    ds, trained, taught = _train(event, registry, recipe, teacher, on_epoch, checkpointer, distributed)
    regression = ds.task == "regression"  # its variants are judged by R² (tablegraph), not by accuracy
    compiled = compile_variants(
        trained.module,
        trained.x_test,
        np.zeros(len(trained.y_test), dtype=np.int64) if regression else trained.y_test,
        calibration=trained.x_calibration,
        budget=accuracy_budget,
        atol=atol,
        rtol=rtol,
    )
    if ds.schema is not None:
        compiled = table_graphs(compiled, trained.module, ds, trained.x_test, trained.y_test, budget=accuracy_budget)
    draft = _draft(event, recipe, ds, trained, compiled)
    if taught is not None:
        teacher_ref, comparison = report(taught, trained, compiled.files[MODEL_FILE])
        lineage = draft.lineage.model_copy(update={"teacher": teacher_ref})
        draft = draft.model_copy(update={"lineage": lineage, "distillation": comparison})
    # The event id is the claim: however many deliveries get here, the event becomes one version.
    manifest = registry.register(event.tenant, request.model_name, compiled.files, draft, event_id=event.id)
    checkpointer.finish()
    return manifest


def run_trial(
    event: TrainingRequested,
    registry: Registry,
    *,
    on_epoch: ProgressFn | None = None,
    checkpoints: CheckpointPolicy | None = None,
    distributed: DistributedOptions | None = None,
) -> dict[str, float]:
    """Train a sweep's trial and return its held-out metrics: a run, never compiled nor registered."""
    recipe, spec = event.data.recipe, event.data.recipe.distill
    if f"datasets/{event.tenant}/" not in event.data.dataset.uri:
        raise DatasetError(f"dataset {event.data.dataset.uri} lies outside tenant {event.tenant!r}")
    teacher = find_teacher(registry, event.tenant, spec) if spec is not None else None
    if teacher is not None:
        recipe = taught_recipe(recipe, teacher)
    checkpointer = Checkpointer.open(registry.store, event.tenant, event.id, checkpoints or CheckpointPolicy())
    _, trained, _ = _train(event, registry, recipe, teacher, on_epoch, checkpointer, distributed)
    checkpointer.finish()
    return dict(trained.metrics)


def _train(
    event: TrainingRequested,
    registry: Registry,
    recipe: Recipe,
    teacher: Any,
    on_epoch: ProgressFn | None,
    checkpointer: Checkpointer,
    distributed: DistributedOptions | None,
) -> tuple[Dataset, Trained, Any]:
    """Fetch the dataset and train the recipe on it (data-parallel when it asks for workers)."""
    spec, policy = recipe.distill, checkpointer.policy
    with tempfile.TemporaryDirectory(prefix="fermion-job-") as tmp:
        ds = fetch_dataset(event, registry, recipe, Path(tmp))
        if teacher is not None and ds.schema is not None:
            raise DatasetError("distillation takes npz or picture datasets; a table model's teacher is not supported")
        taught = lesson(registry, teacher, spec, ds) if teacher is not None and spec is not None else None
        options = distributed or DistributedOptions()
        if recipe.workers > 1 and options.launcher == "kubernetes":
            from .kubernetes import train_on_cluster  # only a trainer on a cluster needs the client

            trained = train_on_cluster(event, ds, registry.store, policy=policy, options=options, on_epoch=on_epoch)
        elif recipe.workers > 1:
            trained = train_distributed(
                event,
                ds,
                registry.store,
                Path(tmp),
                policy=policy,
                max_restarts=options.max_restarts,
                on_epoch=on_epoch,
            )
        else:
            trained = train(ds, recipe, on_epoch, checkpointer, teacher=taught.logits if taught else None)
    return ds, trained, taught


def _draft(event: TrainingRequested, recipe: Recipe, ds: Dataset, trained: Trained, compiled: Compiled) -> Draft:
    """What the job says about the version it registers."""
    dataset = event.data.dataset
    return Draft(
        signature=_signature(ds, trained),
        labels=trained.labels,
        features=ds.schema.model_dump() if ds.schema is not None else None,
        variants={name: v["file"] for name, v in compiled.variants.items()},
        metrics=trained.metrics,
        evaluation=trained.evaluation,
        image=trained.image.model_dump() if trained.image is not None else None,
        lineage=Lineage(
            training_event_id=event.id,
            dataset_sha256=dataset.sha256,
            dataset_uri=dataset.uri,
            recipe=recipe.model_dump(),
            code_version=code_version(),
        ),
        compile_report={**compiled.report, "train_seconds": round(trained.duration_s, 3)},
        profile=reference_profile(ds, trained).model_dump(),  # issue 17: the drift monitor's reference
    )


def _signature(ds: Dataset, trained: Trained) -> Signature:
    """One `input` tensor (rows, pictures), or a table's columns by name and its answers."""
    if ds.schema is None:
        features = [int(d) for d in trained.x_test.shape[1:]]  # [n] for rows, [H, W, C] for pictures
        return Signature(
            inputs=[TensorSpec(name=INPUT_NAME, datatype="FP32", shape=[-1, *features])],
            outputs=[TensorSpec(name=OUTPUT_NAME, datatype="FP32", shape=[-1, len(trained.labels)])],
        )
    inputs = [TensorSpec(name=c.name, datatype=c.datatype, shape=[-1, 1]) for c in ds.schema.columns]
    if ds.schema.task == "regression":
        return Signature(inputs=inputs, outputs=[TensorSpec(name=PREDICTION, datatype="FP32", shape=[-1, 1])])
    n = len(ds.schema.classes)
    outputs = [TensorSpec(name=name, datatype="FP32", shape=[-1, n]) for name in (LOGITS, PROBABILITIES)]
    return Signature(inputs=inputs, outputs=outputs)
