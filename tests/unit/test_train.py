"""Dataset loading, the built-in architectures and evaluation: bad input named, good input learned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fermion.events import Recipe
from fermion.functions.trainer.architectures import build
from fermion.functions.trainer.errors import DatasetError, UnknownArchitecture
from fermion.functions.trainer.train import Dataset, evaluate, load_dataset, train


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
    np.testing.assert_allclose(ds.x, x, rtol=1e-6)


def test_a_missing_label_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"no label column 'label'; its columns are \['a', 'b'\]"):
        load_dataset(tmp_path / "d.csv", "csv", "label")


def test_a_non_numeric_feature_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,label\n1,x\nnope,y\n")
    with pytest.raises(DatasetError, match="csv line 3"):
        load_dataset(tmp_path / "d.csv", "csv", "label")


def test_an_npz_without_labels_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4)))
    with pytest.raises(DatasetError, match=r"lacks array\(s\) \['y'\]"):
        load_dataset(tmp_path / "d.npz", "npz", "label")


def test_a_file_that_is_not_npz_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"not a readable \.npz"):
        load_dataset(tmp_path / "d.npz", "npz", "label")


def test_unknown_architecture_lists_the_known_ones() -> None:
    with pytest.raises(UnknownArchitecture, match="'transformer'; available: cnn, mlp"):
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
        lambda epoch, total, loss, metrics: epochs.append(epoch),
    )
    assert epochs == list(range(1, 16))
    assert result.metrics["accuracy"] >= 0.95
    assert 0.0 <= result.metrics["macro_f1"] <= 1.0
    # The raw, un-standardised features go straight in: preprocessing is part of the module.
    with torch.no_grad():
        pred = result.module(torch.from_numpy(x)).argmax(1).numpy()
    assert np.mean(pred == y) >= 0.95


def test_evaluate_macro_f1() -> None:
    logits = np.eye(3)[[0, 0, 1, 2]]
    metrics = evaluate(logits, np.array([0, 1, 1, 2]), 3)
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
