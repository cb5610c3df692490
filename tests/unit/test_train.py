"""Dataset loading, the built-in architectures and evaluation: bad input named, good input learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from fermion.events import Recipe
from fermion.training.architectures import build
from fermion.training.data import Dataset, load_dataset
from fermion.training.errors import DatasetError, UnknownArchitecture
from fermion.training.loop import epoch_order, train
from fermion.training.metrics import confusion, evaluate, evaluation


def _blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4)) + y[:, None] * 3.0 + 100.0  # offset: standardisation must be in the graph
    return x.astype(np.float32), y


def test_csv_with_a_label_column_loads_with_string_labels(tmp_path: Path) -> None:
    x, y = _blobs(20)
    rows = ["a,b,species,c,d"] + [f"{r[0]},{r[1]},{'xyz'[c]},{r[2]},{r[3]}" for r, c in zip(x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "d.csv", "csv", "species")
    assert ds.x.shape == (20, 4) and ds.x.dtype == np.float32
    assert ds.labels == sorted({"xyz"[c] for c in y})
    assert ds.schema is not None and ds.schema.names() == ["a", "b", "c", "d"] and ds.schema.label == "species"
    # Issue 26: the columns are scaled inside the graph now, so the rows are (x - mean) / std of the training split.
    means = np.array([c.mean for c in ds.schema.columns], dtype=np.float32)
    stds = np.array([c.std for c in ds.schema.columns], dtype=np.float32)
    np.testing.assert_allclose(ds.x * stds + means, x, rtol=1e-5)


def test_a_label_column_the_table_lacks_falls_back_to_the_shared_rule(tmp_path: Path) -> None:
    # Issue 26: the recipe's column if present, else label/target/class/y/outcome, else the last column.
    (tmp_path / "d.csv").write_text("a,b\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    ds = load_dataset(tmp_path / "d.csv", "csv", "species")
    assert ds.schema is not None and ds.schema.label == "b" and ds.labels == ["0", "1"]


def test_a_text_column_is_dropped_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,note,label\n" + "".join(f"{i},words {i},{'xy'[i % 2]}\n" for i in range(20)))
    ds = load_dataset(tmp_path / "d.csv", "csv", "label")
    assert ds.schema is not None and ds.schema.names() == ["a"]
    assert ds.schema.dropped == {"note": "text or id-like: 20 distinct values in 20 rows"}


SENTINEL = "s3cr3t-cell-value"


@pytest.mark.parametrize(
    ("content", "named"),
    [
        # a table with nothing usable: every column is named with why, never a cell
        (
            "a,b,label\n" + "".join(f"1,{SENTINEL}{i},{'xy'[i % 2]}\n" for i in range(12)),
            ["'a': constant", "'b': text"],
        ),
        ("a,label\n" + "".join(f"{i},{SENTINEL}\n" for i in range(12)), ["single class"]),  # every row the same label
        (b"a,label\n1,x\n" + SENTINEL.encode("utf-16"), ["does not parse", "Expected 2 columns"]),
    ],
)
def test_csv_errors_name_the_place_never_the_value(
    tmp_path: Path, content: str | bytes, named: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 25: a trainer log quoted a dataset cell ("could not convert string to float: 'secret'").
    path = tmp_path / "d.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetError) as caught:
        load_dataset(path, "csv", "label")
    message = str(caught.value)
    for part in named:
        assert part in message, (part, message)
    seen = "".join(__import__("traceback").format_exception(caught.value))  # what log.exception would write
    assert SENTINEL not in seen, seen
    assert "0xff" not in message, f"a byte of the file in {message!r}"


def test_an_npz_without_labels_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4)))
    with pytest.raises(DatasetError, match=r"lacks array\(s\) \['y'\]"):
        load_dataset(tmp_path / "d.npz", "npz", "label")


def test_a_file_that_is_not_npz_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"not a readable \.npz"):
        load_dataset(tmp_path / "d.npz", "npz", "label")


def test_unknown_architecture_lists_the_known_ones() -> None:
    with pytest.raises(UnknownArchitecture, match="'transformer'; available: cnn, mlp, rescnn, textbag"):
        build("transformer", np.zeros((10, 4), np.float32), 2)


def test_cnn_needs_square_images() -> None:
    with pytest.raises(DatasetError, match="square"):
        build("cnn", np.zeros((10, 10), np.float32), 2)


def test_mlp_learns_and_carries_its_preprocessing() -> None:
    x, y = _blobs()
    epochs: list[int] = []
    result = train(
        Dataset(x, y, ["a", "b", "c"]),
        Recipe(architecture="mlp", epochs=15, learning_rate=3e-3),
        lambda epoch, total, loss, metrics, **_: epochs.append(epoch),
    )
    assert epochs == list(range(1, 16))
    assert result.metrics["accuracy"] >= 0.95
    assert 0.0 <= result.metrics["macro_f1"] <= 1.0
    # The raw, un-standardised features go straight in: preprocessing is part of the module.
    with torch.no_grad():
        pred = result.module(torch.from_numpy(x)).argmax(1).numpy()
    assert np.mean(pred == y) >= 0.95


def test_training_keeps_the_validation_loss_per_epoch_and_the_last_confusion_matrix() -> None:
    x, y = _blobs(120)
    val_losses: list[float] = []
    result = train(
        Dataset(x, y, ["a", "b", "c"]),
        Recipe(architecture="mlp", epochs=3, learning_rate=3e-3),
        lambda epoch, total, loss, metrics, **extra: val_losses.append(extra["val_loss"]),
    )
    assert len(val_losses) == 3 and all(v > 0 for v in val_losses)
    assert result.evaluation is not None
    cm = np.array(result.evaluation["confusion"])
    assert cm.shape == (3, 3) and cm.sum() == len(result.y_test)
    assert [c["label"] for c in result.evaluation["per_class"]] == ["a", "b", "c"]
    assert np.trace(cm) / cm.sum() == pytest.approx(result.metrics["accuracy"])


def test_per_class_precision_recall_f1_from_the_confusion_matrix() -> None:
    # true 0 predicted 0, 0; true 1 predicted 0, 1; true 2 predicted 2; class 3 never seen nor predicted
    cm = confusion(np.eye(4)[[0, 0, 0, 1, 2]], np.array([0, 0, 1, 1, 2]), 4)
    ev = evaluation(cm, ["w", "x", "y", "z"])
    assert ev["confusion"] == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    w, x, _, z = ev["per_class"]
    assert (w["precision"], w["recall"], w["support"]) == (pytest.approx(2 / 3, abs=1e-6), 1.0, 2)
    assert (x["precision"], x["recall"], x["f1"]) == (1.0, 0.5, pytest.approx(2 / 3, abs=1e-6))
    assert z == {"label": "z", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_evaluate_macro_f1() -> None:
    logits = np.eye(3)[[0, 0, 1, 2]]
    metrics = evaluate(logits, np.array([0, 1, 1, 2]), 3)
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def _tokenised_text(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Documents of token ids (0 = padding): each class has its own topic words among common ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.zeros((n, 24), np.float32)
    for i, c in enumerate(y):
        length = rng.integers(8, 24)
        common = rng.integers(40, 200, length)
        topic = rng.integers(10 + 10 * c, 20 + 10 * c, 3)
        doc = np.concatenate([common[: length - 3], topic])
        x[i, :length] = rng.permutation(doc)
    return x, y


@pytest.mark.parametrize(
    ("architecture", "data", "epochs", "lr", "bar"),
    [("rescnn", "digits", 10, 3e-3, 0.95), ("textbag", "text", 25, 1e-2, 0.9)],
)
def test_the_other_built_ins_train_to_their_stated_accuracy(
    architecture: str, data: str, epochs: int, lr: float, bar: float
) -> None:
    if data == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        ds = Dataset(d.data.astype(np.float32), d.target, [str(i) for i in range(10)])
    else:
        x, y = _tokenised_text()
        ds = Dataset(x, y, ["a", "b", "c"])
    result = train(ds, Recipe(architecture=architecture, epochs=epochs, learning_rate=lr))
    assert result.metrics["accuracy"] >= bar, result.metrics
    from fermion.compile import compile_variants

    compiled = compile_variants(result.module, result.x_test, result.y_test, calibration=result.x_calibration)
    assert "fp32" in compiled.variants  # exports, and the ONNX graph matches torch
    if data == "text":  # unseen token ids (beyond the vocabulary) are served, not an out-of-range crash
        import onnxruntime as ort

        session = ort.InferenceSession(compiled.files["model.onnx"], providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"input": np.full((1, 24), 10_000, np.float32)})
        assert out.shape == (1, 3) and np.all(np.isfinite(out))


def test_textbag_refuses_features_that_are_not_token_ids() -> None:
    with pytest.raises(DatasetError, match="token ids"):
        build("textbag", np.array([[0.5, 1.0]] * 10, np.float32), 2)


def test_the_held_out_rows_are_evaluated_in_chunks_with_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    # A large held-out split is evaluated EVAL_ROWS at a time (its activations never exist at once).
    from fermion.training import loop

    x, y = _blobs(400)
    recipe = Recipe(architecture="mlp", epochs=2, learning_rate=3e-3)
    losses: dict[str, list[float]] = {"whole": [], "chunked": []}
    whole = train(Dataset(x, y, ["a", "b", "c"]), recipe, lambda *a, **e: losses["whole"].append(e["val_loss"]))
    monkeypatch.setattr(loop, "EVAL_ROWS", 7)
    chunked = train(Dataset(x, y, ["a", "b", "c"]), recipe, lambda *a, **e: losses["chunked"].append(e["val_loss"]))
    assert losses["chunked"] == pytest.approx(losses["whole"], rel=1e-6)
    assert whole.evaluation is not None and chunked.evaluation is not None
    assert chunked.evaluation["confusion"] == whole.evaluation["confusion"]
    assert np.array(chunked.evaluation["confusion"]).sum() == len(whole.y_test)
    assert chunked.metrics == whole.metrics


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 4), (2, 5), (1000, 8), (1, 2)])
def test_an_epochs_order_is_distributed_samplers(n: int, world: int) -> None:
    for rank in range(world):
        sampler: DistributedSampler[int] = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=7)  # type: ignore[arg-type]
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            assert epoch_order(n, world, rank, 7, epoch).tolist() == list(sampler)
