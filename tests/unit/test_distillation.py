"""Knowledge distillation's parts (issue 30): the blended loss, the teacher's answers as logits, the width knob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError
from torch.nn import functional

from fermion.events import Distillation, Recipe
from fermion.training.architectures import build
from fermion.training.data import Dataset
from fermion.training.distillation import Criterion, Teacher, distillation_loss, footprint
from fermion.training.errors import DatasetError, UnknownArchitecture
from fermion.training.loop import train
from tests.helpers import linear_onnx
from tests.helpers.models import model_bytes


def _logits(seed: int, rows: int = 8, classes: int = 4) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)) * 3


def test_alpha_zero_is_plain_cross_entropy() -> None:
    student, teacher, labels = _logits(0), _logits(1), torch.arange(8) % 4
    loss = distillation_loss(student, teacher, labels, temperature=4.0, alpha=0.0)
    assert torch.allclose(loss, functional.cross_entropy(student, labels))


def test_the_soft_term_is_t_squared_kl_from_the_teacher_and_vanishes_when_they_agree() -> None:
    student, teacher, labels, t = _logits(0), _logits(1), torch.zeros(8, dtype=torch.long), 3.0
    p = torch.softmax(teacher / t, dim=1)
    kl = (p * (p.log() - torch.log_softmax(student / t, dim=1))).sum(dim=1).mean()
    assert torch.allclose(distillation_loss(student, teacher, labels, t, alpha=1.0), t * t * kl, atol=1e-5)
    assert distillation_loss(teacher, teacher, labels, t, alpha=1.0).abs() < 1e-5


def test_the_blend_weighs_soft_and_hard_by_alpha() -> None:
    student, teacher, labels = _logits(0), _logits(1), torch.arange(8) % 4
    soft = distillation_loss(student, teacher, labels, 2.0, alpha=1.0)
    hard = distillation_loss(student, teacher, labels, 2.0, alpha=0.0)
    assert torch.allclose(distillation_loss(student, teacher, labels, 2.0, alpha=0.3), 0.3 * soft + 0.7 * hard)


def test_a_step_on_the_soft_term_moves_the_student_towards_the_teacher() -> None:
    student = _logits(0).requires_grad_()
    teacher, labels = _logits(1), torch.zeros(8, dtype=torch.long)
    before = distillation_loss(student, teacher, labels, 4.0, alpha=1.0)
    before.backward()
    assert student.grad is not None
    after = distillation_loss(student.detach() - 0.5 * student.grad, teacher, labels, 4.0, alpha=1.0)
    assert after < before


def test_the_criterion_indexes_the_teacher_by_training_row() -> None:
    teacher = _logits(1, rows=20)
    spec = Distillation(teacher="t:1", temperature=2.0, alpha=1.0)
    rows, student, labels = torch.tensor([3, 7, 11]), _logits(0, rows=3), torch.zeros(3, dtype=torch.long)
    want = distillation_loss(student, teacher[rows], labels, 2.0, 1.0)
    assert torch.allclose(Criterion(spec, teacher)(student, labels, rows), want)
    assert torch.allclose(Criterion()(student, labels, rows), functional.cross_entropy(student, labels))
    with pytest.raises(ValueError, match="both"):
        Criterion(spec)


def _softmax_onnx(path: Path, w: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["s"]), helper.make_node("Softmax", ["s"], ["p"], axis=1)],
        "soft",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", w.shape[1]])],
        [numpy_helper.from_array(w.astype(np.float32), "W")],
    )
    path.write_bytes(model_bytes(graph))
    return path


def test_a_teacher_answering_probabilities_gives_logits_in_the_datasets_class_order(tmp_path: Path) -> None:
    w = np.random.default_rng(0).normal(size=(4, 3))
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    teacher = Teacher(_softmax_onnx(tmp_path / "t.onnx", w), labels=["c", "a", "b"])  # output order c, a, b
    logits = teacher.logits(x, ["a", "b", "c"])
    scores = x @ w
    want = torch.log_softmax(torch.from_numpy(scores[:, [1, 2, 0]]), dim=1).numpy()
    np.testing.assert_allclose(logits, want, atol=1e-4)


def test_a_teacher_refuses_rows_of_another_width_and_other_classes(tmp_path: Path) -> None:
    (tmp_path / "lin.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))
    teacher = Teacher(tmp_path / "lin.onnx", labels=[])
    with pytest.raises(DatasetError, match=r"shape \[batch, 4\]; this dataset's rows are \[6\]"):
        teacher.logits(np.zeros((2, 6), np.float32), ["0", "1", "2"])
    with pytest.raises(DatasetError, match="answers 3 classes; this dataset has 2"):
        teacher.logits(np.zeros((2, 4), np.float32), ["0", "1"])
    named = Teacher(tmp_path / "lin.onnx", labels=["x", "y", "z"])
    with pytest.raises(DatasetError, match=r"lacks \['a'\]"):
        named.logits(np.zeros((2, 4), np.float32), ["a", "x", "y"])


def test_a_footprint_counts_parameters_bytes_and_latency(tmp_path: Path) -> None:
    (tmp_path / "lin.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))
    (tmp_path / "model.int8.onnx").write_bytes(b"x" * 10_000)  # a variant beside it is not the graph's
    fp = footprint(tmp_path / "lin.onnx", np.zeros((1, 4), np.float32))
    assert fp.parameters == 4 * 3 + 3
    assert fp.file_bytes == (tmp_path / "lin.onnx").stat().st_size and fp.latency_ms > 0


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_width_knob_sizes_the_built_ins() -> None:
    rows, pictures = np.random.rand(50, 64).astype(np.float32), np.random.rand(50, 64).astype(np.float32)
    assert _params(build("mlp", rows, 10, 32)) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert _params(build("mlp", rows, 10)) == _params(build("mlp", rows, 10, 256))  # the default as before
    assert _params(build("cnn", pictures, 10, 8)) * 4 <= _params(build("cnn", pictures, 10))
    tokens = np.random.default_rng(0).integers(0, 9, (50, 5)).astype(np.float32)
    assert _params(build("textbag", tokens, 3, 8)) < _params(build("textbag", tokens, 3))


def test_a_recipe_without_a_width_knob_refuses_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from fermion.training import architectures

    monkeypatch.setattr(architectures, "available", lambda: {"mine": lambda x, n: torch.nn.Linear(1, n)})
    with pytest.raises(UnknownArchitecture, match="no width knob"):
        build("mine", np.zeros((4, 1), np.float32), 2, 16)


def test_recipes_check_the_teacher_reference_and_one_worker() -> None:
    assert Recipe(distill={"teacher": "digits@production"}).distill == Distillation(teacher="digits@production")
    for bad in ("Digits", "a@b:3", "x:0", "../up"):
        with pytest.raises(ValidationError):
            Recipe(distill={"teacher": bad})
    with pytest.raises(ValidationError, match="one worker"):
        Recipe(workers=2, distill={"teacher": "t"})
    with pytest.raises(ValidationError):
        Distillation(teacher="t", alpha=1.5)


def test_training_with_a_teacher_learns_from_its_logits() -> None:
    # A teacher that says every row is class 1 while the labels are balanced: with alpha 1 the student follows it.
    rng = np.random.default_rng(0)
    ds = Dataset(rng.normal(size=(200, 3)).astype(np.float32), np.arange(200) % 2, ["0", "1"])
    teacher = np.tile(np.array([[-5.0, 5.0]], np.float32), (200, 1))
    recipe = Recipe(epochs=5, learning_rate=1e-2, hidden=8, distill={"teacher": "t", "alpha": 1.0, "temperature": 1})
    trained = train(ds, recipe, teacher=teacher)
    with torch.no_grad():
        predicted = trained.module(torch.from_numpy(trained.x_test)).argmax(dim=1)
    assert bool((predicted == 1).all())
    plain = train(ds, recipe.model_copy(update={"distill": None}), teacher=None)
    assert plain.metrics["accuracy"] < 0.9  # labels unrelated to the rows: no better than chance alone
