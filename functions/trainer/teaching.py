"""A distillation job's teacher: found in the registry, checked against the dataset, asked for soft targets.

The teacher is any registered version (torch-trained, pushed ONNX, ...); the student's manifest
names it in its lineage (name, version, content hash) and records the two side by side: held-out
metrics on the student's own held-out split, parameters, file bytes and CPU latency at batch 1.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fermion.events import Distillation, ImageContract, Recipe
from fermion.model_store import MODEL_FILE, InvalidName, Manifest, NotFound, Registry
from fermion.training.data import Dataset
from fermion.training.distillation import Teacher, footprint
from fermion.training.errors import DatasetError
from fermion.training.loop import Trained
from fermion.training.metrics import evaluate


@dataclass(frozen=True)
class Lesson:
    """A teacher in hand: its manifest, its runnable graph, and its logits for every row of the dataset."""

    spec: Distillation
    manifest: Manifest
    teacher: Teacher
    logits: np.ndarray


def find_teacher(registry: Registry, tenant: str, spec: Distillation) -> Manifest:
    """The version `spec.teacher` names; a teacher that does not exist fails the job for good.

    A store that cannot be reached (StoreError) is left to the worker, which retries it.
    """
    try:
        return registry.lookup(tenant, spec.teacher)
    except (NotFound, InvalidName) as exc:
        raise DatasetError(f"teacher {spec.teacher!r} cannot teach: {exc}") from exc


def taught_recipe(recipe: Recipe, teacher: Manifest) -> Recipe:
    """The recipe with the picture teacher's image contract where the recipe left it out (same pixels in)."""
    if recipe.image is not None or teacher.image is None:
        return recipe
    contract = ImageContract.model_validate({**teacher.image, "mean": None, "std": None})
    return recipe.model_copy(update={"image": contract})


def lesson(registry: Registry, teacher: Manifest, spec: Distillation, ds: Dataset) -> Lesson:
    """The teacher's logits for every row of `ds`; DatasetError naming any mismatch of inputs or classes."""
    if (teacher.image is None) != (ds.image is None):
        kind = "pictures" if teacher.image is not None else "rows of features"
        raise DatasetError(f"teacher {teacher.name}:{teacher.version} takes {kind}; this dataset is not")
    folder = registry.fetch_all(teacher)  # external data beside the graph
    runner = Teacher(folder / MODEL_FILE, teacher.labels)
    try:
        logits = runner.logits(ds.x, ds.labels)
    except DatasetError as exc:
        raise DatasetError(f"teacher {teacher.name}:{teacher.version} cannot teach this dataset: {exc}") from exc
    return Lesson(spec, teacher, runner, logits)


def report(lesson: Lesson, trained: Trained, student_onnx: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The student's lineage entry for its teacher, and the manifest's side-by-side comparison."""
    t = lesson.manifest
    row = trained.x_test[:1]
    n_classes = len(trained.labels)
    teacher_logits = lesson.teacher.logits(trained.x_test, trained.labels)
    with tempfile.TemporaryDirectory(prefix="fermion-student-") as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(student_onnx)
        student = footprint(path, row)
    teacher_side = {
        "name": t.name,
        "version": t.version,
        "metrics": evaluate(teacher_logits, trained.y_test, n_classes),  # on the student's held-out split
        "registered_metrics": t.metrics,
        **footprint(lesson.teacher.path, row).as_dict(),
    }
    comparison = {
        "temperature": lesson.spec.temperature,
        "alpha": lesson.spec.alpha,
        "teacher": teacher_side,
        "student": {"metrics": trained.metrics, **student.as_dict()},
    }
    return {"name": t.name, "version": t.version, "content_sha256": t.content_sha256}, comparison
