"""The pieces behind the CLI's conventions: job states, id prefixes, rows from files, names, labels, providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fermion.cli.rows import by_name, fit_columns, float_rows, read_rows
from fermion.client import FermionError
from fermion.events import FailureReport, ProgressReport, TrainingFailed, TrainingProgress
from fermion.events.deliveries import StoredMessage
from fermion.functions.inference.settings import InferenceSettings, gpu_present
from fermion.functions.ingest.label_columns import default_label
from fermion.model_store import InvalidName, check_name, normal_name
from fermion.service.jobs import by_prefix, job_statuses
from fermion.training.catalog import BUILTIN


def _msg(seq: int, event: object) -> StoredMessage:
    return StoredMessage(seq, "fermion.training.x", event.model_dump_json().encode(), {})  # type: ignore[attr-defined]


def test_a_cancelled_job_is_cancelled_at_the_epoch_it_stopped_after() -> None:
    progress = [
        TrainingProgress(data=ProgressReport(job_id="j1", model_name="m", epoch=e, epochs=10, loss=1.0)) for e in (1, 2)
    ]
    stopped = TrainingFailed(
        data=FailureReport(
            job_id="j1", model_name="m", reason="job j1 was cancelled after epoch 3 of 10", error="JobCancelled"
        )
    )
    failed = TrainingFailed(data=FailureReport(job_id="j2", model_name="m", reason="boom", error="DatasetError"))
    jobs = job_statuses([], [_msg(i, e) for i, e in enumerate([*progress, stopped, failed], 1)])
    assert (jobs["j1"].state, jobs["j1"].epoch) == ("cancelled", 3)
    assert jobs["j2"].state == "failed"


def test_ids_by_unique_prefix() -> None:
    ids = ["abc123", "abd456", "x"]
    assert by_prefix(ids, "abc") == "abc123"
    assert by_prefix(ids, "x") == "x"
    with pytest.raises(LookupError, match="ambiguous"):
        by_prefix(ids, "ab")
    with pytest.raises(LookupError, match="no job 'zz'"):
        by_prefix(ids, "zz")


def test_csv_rows_with_or_without_a_header(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b,target\n1,2,0\n3,4,1\n")
    (tmp_path / "p.csv").write_text("1,2\n3,4\n")
    rows, header = read_rows(tmp_path / "h.csv")
    assert header == ["a", "b", "target"] and rows == [
        {"a": "1", "b": "2", "target": "0"},
        {"a": "3", "b": "4", "target": "1"},
    ]
    meta = {"inputs": [{"name": "input", "shape": [-1, 2]}], "parameters": {}}
    assert not by_name(meta, rows)  # a model on float features: its rows by count
    x = float_rows(rows, header, "h.csv")
    assert fit_columns(x, header, meta, "h.csv").tolist() == [[1, 2], [3, 4]]  # the label column is dropped
    rows, header = read_rows(tmp_path / "p.csv")
    assert header is None and fit_columns(float_rows(rows, header, "p.csv"), header, meta, "p.csv").shape == (2, 2)
    table = {"inputs": [{"name": "a", "shape": [-1, 1]}], "parameters": {"features": {"columns": []}}}
    assert by_name(table, read_rows(tmp_path / "h.csv")[0])  # a table model: the server matches names
    (tmp_path / "w.csv").write_text("a,b\n1,x\n")
    with pytest.raises(FermionError, match=r"w\.csv line 2: 'x' is not a number"):
        float_rows(*read_rows(tmp_path / "w.csv"), "w.csv")
    with pytest.raises(FermionError, match="has 3 columns; the model takes 5"):
        fit_columns(np.zeros((1, 3), np.float32), None, {"inputs": [{"name": "input", "shape": [-1, 5]}]}, "z.csv")


def test_one_naming_rule_for_datasets_and_models() -> None:
    assert normal_name("Iris") == "iris" and normal_name("My Model!") == "my-model"
    assert check_name("model", normal_name("Breast Cancer (v2)")) == "breast-cancer-v2"
    with pytest.raises(InvalidName):
        check_name("model", normal_name(".."))


def test_the_default_label_column() -> None:
    assert default_label(["a", "label", "target"]) == "label"
    assert default_label(["a", "target", "b"]) == "target"
    assert default_label(["a", "b", "species"]) == "species"


def test_architectures_listed_without_torch_match_the_trainers() -> None:
    from fermion.training.architectures import ARCHITECTURES

    assert set(BUILTIN) == set(ARCHITECTURES)


def test_without_a_gpu_the_default_providers_never_try_one(tmp_path: Path) -> None:
    settings = InferenceSettings(home=tmp_path)
    if gpu_present():
        assert settings.provider_order()[0] == "TensorrtExecutionProvider"
    else:
        assert settings.provider_order() == ["CPUExecutionProvider"]  # no GPU library is loaded, nothing falls back
    asked = InferenceSettings(home=tmp_path, require_gpu=True)
    assert "CUDAExecutionProvider" in asked.provider_order()  # an explicit GPU request keeps the loud fallback
    explicit = InferenceSettings(home=tmp_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert explicit.provider_order()[0] == "CUDAExecutionProvider"
