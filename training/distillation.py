"""Knowledge distillation: the blended loss, and a teacher (any ONNX graph) turned into soft targets.

The teacher runs under ONNX Runtime, so a torch-trained version, a pushed ONNX file or anything
else the registry holds can teach. Its answers become logits over the dataset's classes: columns
are matched by label name when the teacher has labels, and an output that is already a
probability distribution (rows of non-negative numbers summing to one) is turned back into logits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.nn import functional

from fermion.events import Distillation

from .errors import DatasetError

LATENCY_RUNS = 50


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels).

    T^2 keeps the soft term's gradients on the hard term's scale as T grows (Hinton et al., 2015).
    """
    soft = functional.kl_div(
        functional.log_softmax(student / temperature, dim=1),
        functional.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = functional.cross_entropy(student, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


class Criterion:
    """The loss of a training batch: cross-entropy, or the distillation blend over the rows' soft targets."""

    def __init__(self, spec: Distillation | None = None, teacher: torch.Tensor | None = None) -> None:
        if (spec is None) != (teacher is None):
            raise ValueError("a distillation needs both its spec and the teacher's logits")
        self.spec, self.teacher = spec, teacher

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The batch's loss; `rows` index the training rows (and so the teacher's logits)."""
        if self.spec is None or self.teacher is None:
            return functional.cross_entropy(logits, labels)
        return distillation_loss(logits, self.teacher[rows], labels, self.spec.temperature, self.spec.alpha)


@dataclass(frozen=True)
class Footprint:
    """What a model costs to ship and run: parameters (initializer elements), file bytes, CPU ms at batch 1."""

    parameters: int
    file_bytes: int
    latency_ms: float

    def as_dict(self) -> dict[str, float]:
        """The manifest's form."""
        return {"parameters": self.parameters, "file_bytes": self.file_bytes, "latency_ms": self.latency_ms}


class Teacher:
    """A registered version's ONNX graph, run on the CPU over a dataset's rows."""

    def __init__(self, path: Path, labels: list[str]) -> None:
        self.path, self.labels = path, labels
        self.session = session(path)  # the serving runtime: the teacher answers as it would when served
        self.input = self.session.get_inputs()[0]
        self.output = next(
            (o.name for o in self.session.get_outputs() if len(o.shape or []) == 2 and "float" in o.type), None
        )
        if self.output is None:
            raise DatasetError("the teacher has no float output of shape (batch, classes) to learn from")

    def check_inputs(self, x: np.ndarray) -> None:
        """Refuse rows the teacher does not take, naming both shapes."""
        want = [d if isinstance(d, int) and d > 0 else None for d in self.input.shape[1:]]
        have = list(x.shape[1:])
        if len(want) != len(have) or any(w is not None and w != h for w, h in zip(want, have, strict=True)):
            shown = ["?" if w is None else str(w) for w in want]
            raise DatasetError(
                f"the teacher takes inputs of shape [batch, {', '.join(shown)}]; this dataset's rows are {have}"
            )

    def logits(self, x: np.ndarray, labels: list[str], batch: int = 512) -> np.ndarray:
        """The teacher's logits for every row of `x`, columns in the order of the dataset's `labels`."""
        self.check_inputs(x)
        out = np.concatenate(
            [self._run(x[i : i + batch]) for i in range(0, len(x), batch)] or [np.zeros((0, len(labels)))]
        ).astype(np.float32)
        if out.shape[1] != len(labels) and not self.labels:
            raise DatasetError(f"the teacher answers {out.shape[1]} classes; this dataset has {len(labels)}")
        if self.labels:
            out = out[:, self._columns(labels, out.shape[1])]
        if np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):  # probabilities, not logits
            out = np.log(np.clip(out, 1e-7, 1.0))
        return out

    def _columns(self, labels: list[str], answers: int) -> list[int]:
        if len(self.labels) != answers:
            raise DatasetError(f"the teacher lists {len(self.labels)} labels but answers {answers} classes")
        missing = [c for c in labels if c not in self.labels]
        if missing or len(self.labels) != len(labels):
            raise DatasetError(
                f"the teacher's classes {self.labels} are not this dataset's {labels}"
                + (f" (it lacks {missing})" if missing else "")
            )
        return [self.labels.index(c) for c in labels]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output], {self.input.name: x.astype(np.float32)})[0])


def session(path: Path) -> ort.InferenceSession:
    """A one-thread CPU session: latency at batch 1 on one core, as a small CPU function has it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def footprint(path: Path, one_row: np.ndarray) -> Footprint:
    """Parameters (initializer elements), file bytes (graph and external data) and median CPU ms at batch 1."""
    model = onnx.load(str(path), load_external_data=False)
    parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    external = {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }  # graph's own data files, not the version's other variants
    size = path.stat().st_size + sum((path.parent / f).stat().st_size for f in external)
    run = session(path)
    feed = {run.get_inputs()[0].name: one_row.astype(np.float32)}
    run.run(None, feed)  # warm-up: the first run allocates
    times = []
    for _ in range(LATENCY_RUNS):
        tick = time.perf_counter()
        run.run(None, feed)
        times.append(time.perf_counter() - tick)
    return Footprint(parameters, size, round(float(np.median(times)) * 1000, 4))
