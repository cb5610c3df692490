"""`fermion predict` and the Python client on table models and a two-input graph, over a real inference server.

The inference app runs under uvicorn on 127.0.0.1 over a local-directory registry and real ONNX Runtime
sessions; the CLI knows only its URL and a key.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from typer.testing import CliRunner

from fermion.cli import app as cli
from fermion.client import Client
from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import LocalDirStore, Registry
from tests.helpers import api_key, free_port, linear_draft, linear_onnx
from tests.helpers.tables import CLASSES, table_draft, table_onnx, two_input_draft, two_input_onnx

pytestmark = pytest.mark.integration

HEADER = ["id", "age", "plan", "member", "outcome"]
TABLE = [
    ["1", "31", "plus", "yes", "stay"],
    ["2", "", "basic", "no", "churn"],
    ["3", "58.5", "pro", "true", "upgrade"],
    ["4", "", "", "", "stay"],
    ["5", "22", "enterprise", "0", "churn"],
]


class Served(NamedTuple):
    url: str
    key: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("table-serving")
    registry = Registry(LocalDirStore(home / "store"), home / "cache")
    registry.register("default", "churn", {"model.onnx": table_onnx()}, table_draft())
    registry.register("default", "spend", {"model.onnx": table_onnx("regression")}, table_draft("regression"))
    registry.register("default", "text", {"model.onnx": two_input_onnx()}, two_input_draft())
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    settings = InferenceSettings(home=home, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    port = free_port()
    config = uvicorn.Config(
        create_app(lambda: runtime, lambda: settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the inference server did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", api_key(registry, "infer"))
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _predict(served: Served, tmp: Path, *args: str) -> Any:
    env = {"FERMION_URL": served.url, "FERMION_API_KEY": served.key, "FERMION_HOME": str(tmp / "client")}
    return CliRunner().invoke(cli, ["predict", *args], env=env)


def _write_csv(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def _json(result: Any) -> Any:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_shuffled_columns_with_the_label_left_in_predict_as_the_ordered_rows(served: Served, tmp_path: Path) -> None:
    ordered = _write_csv(tmp_path / "ordered.csv", None, [r[1:4] for r in TABLE])  # the model's order, no names
    order = [4, 3, 0, 2, 1]  # outcome, member, id, plan, age
    shuffled = _write_csv(tmp_path / "shuffled.csv", [HEADER[i] for i in order], [[r[i] for i in order] for r in TABLE])
    expected = _json(_predict(served, tmp_path, "churn", "--input", str(ordered), "-o", "json"))
    from_shuffled = _predict(served, tmp_path, "churn", "--input", str(shuffled), "-o", "json")
    assert _json(from_shuffled) == expected
    assert "ignoring column 'outcome' of shuffled.csv (the model's label)" in from_shuffled.stderr
    assert "ignoring column(s) 'id' (id)" in from_shuffled.stderr  # a column the trainer dropped
    assert len(expected) == len(TABLE) and all(set(row) == {"prediction", "probabilities"} for row in expected)
    assert all(row["prediction"] in CLASSES and list(row["probabilities"]) == CLASSES for row in expected)
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-5 for row in expected)

    records = [dict(zip(HEADER, r, strict=True)) for r in TABLE]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert _json(_predict(served, tmp_path, "churn", "--input", str(tmp_path / "rows.jsonl"), "-o", "json")) == expected
    typed = pa.table(
        {
            "plan": [r[2] or None for r in TABLE],
            "age": [float(r[1]) if r[1] else None for r in TABLE],
            "member": [r[3] in ("yes", "true") if r[3] else None for r in TABLE],
            "outcome": [r[4] for r in TABLE],
        }
    )
    pq.write_table(typed, tmp_path / "rows.parquet")
    from_parquet = _json(_predict(served, tmp_path, "churn", "--input", str(tmp_path / "rows.parquet"), "-o", "json"))
    assert from_parquet[:4] == expected[:4]  # row 5's member is 0 as text: False here (the same), plan unseen
    assert from_parquet[4]["prediction"] == expected[4]["prediction"]

    with Client(served.url, served.url, api_key=served.key) as client:
        answer = client.predict_rows("churn", records, per_request=2)  # three requests, joined
    assert [
        {"prediction": p, "probabilities": dict(zip(answer["classes"], q, strict=True))}
        for p, q in zip(answer["predictions"], answer["probabilities"], strict=True)
    ] == expected


def test_predictions_are_written_to_csv_and_parquet(served: Served, tmp_path: Path) -> None:
    rows = _write_csv(tmp_path / "rows.csv", HEADER, TABLE)
    expected = _json(_predict(served, tmp_path, "churn", "--input", str(rows), "-o", "json"))
    for name in ("preds.csv", "preds.parquet"):
        done = _predict(served, tmp_path, "churn", "--input", str(rows), "--out", str(tmp_path / name))
        assert done.exit_code == 0, (done.output, done.exception)
        if name.endswith(".csv"):
            with (tmp_path / name).open() as f:
                written = [{k: v if k == "prediction" else float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        else:
            written = pq.read_table(tmp_path / name).to_pylist()
        assert list(written[0]) == ["prediction", *(f"probability_{c}" for c in CLASSES)]
        assert [r["prediction"] for r in written] == [r["prediction"] for r in expected]
        for got, want in zip(written, expected, strict=True):
            assert [got[f"probability_{c}"] for c in CLASSES] == pytest.approx(list(want["probabilities"].values()))
    refused = _predict(served, tmp_path, "churn", "--input", str(rows), "--out", str(tmp_path / "preds.xlsx"))
    assert refused.exit_code != 0 and ".csv or .parquet" in str(refused.exception)


def test_a_missing_and_an_unknown_column_are_refused_by_name(served: Served, tmp_path: Path) -> None:
    rows = _write_csv(tmp_path / "odd.csv", ["age", "plan", "colour"], [["3", "pro", "red"]])
    refused = _predict(served, tmp_path, "churn", "--input", str(rows))
    message = str(refused.exception)
    assert refused.exit_code != 0 and "400" in message, (refused.output, message)
    assert "missing column(s) 'member'" in message and "unknown column(s) 'colour'" in message, message


def test_a_regression_prints_values_in_the_labels_units(served: Served, tmp_path: Path) -> None:
    rows = _write_csv(tmp_path / "rows.csv", ["spend", *HEADER[1:4]], [["120", *r[1:4]] for r in TABLE])
    predicted = _json(_predict(served, tmp_path, "spend", "--input", str(rows), "-o", "json"))
    records = [dict(zip(HEADER[1:4], r[1:4], strict=True)) for r in TABLE]
    direct = httpx.post(
        f"{served.url}/v1/models/spend/versions/1:predict",
        json={"instances": records},
        headers={"Authorization": f"Bearer {served.key}"},
    )
    assert direct.status_code == 200, direct.text
    assert predicted == [{"prediction": v} for v in direct.json()["predictions"]]
    assert all(isinstance(v, float) for v in direct.json()["predictions"])


def test_a_two_input_int64_graph_from_json_lines_of_named_inputs(served: Served, tmp_path: Path) -> None:
    lines = [
        {"input_ids": [1, 2, 3, 4], "attention_mask": [1, 1, 0, 0]},
        {"input_ids": [-5, -5, 0, 0], "attention_mask": [1, 1, 1, 1]},
    ]
    (tmp_path / "tokens.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    predicted = _json(_predict(served, tmp_path, "text", "--input", str(tmp_path / "tokens.jsonl"), "-o", "json"))
    assert [row["prediction"] for row in predicted] == ["negative", "positive"]
    assert all(abs(sum(row["probabilities"].values()) - 1) < 1e-6 for row in predicted)
    (tmp_path / "half.jsonl").write_text(json.dumps({"input_ids": [1, 2, 3, 4]}))
    refused = _predict(served, tmp_path, "text", "--input", str(tmp_path / "half.jsonl"))
    assert refused.exit_code != 0 and "lacks input 'attention_mask'" in str(refused.exception)


def test_a_model_on_float_features_takes_its_rows_as_before(served: Served, tmp_path: Path) -> None:
    rows = [["0.5", "1", "-2", "3"], ["1", "0", "0", "1"]]
    plain = _json(_predict(served, tmp_path, "lin:1", "--input", str(_write_csv(tmp_path / "p.csv", None, rows))))
    labelled = _write_csv(tmp_path / "h.csv", ["a", "b", "c", "d", "target"], [[*r, "0"] for r in rows])
    result = _predict(served, tmp_path, "lin", "--input", str(labelled), "-o", "json")
    assert _json(result) == plain and "ignoring column 'target'" in result.stderr
    assert all(row["prediction"] in ("0", "1", "2") for row in plain)


def test_the_client_takes_numpy_values_and_blanks_as_nan(served: Served) -> None:
    rows = [
        {"age": np.float32(31.0), "plan": "plus", "member": np.int64(1)},
        {"age": np.nan, "plan": "pro", "member": 0},
    ]
    with Client(served.url, served.url, api_key=served.key) as client:
        typed = client.predict_rows("churn", rows)
        plain = client.predict_rows(
            "churn", [{"age": 31.0, "plan": "plus", "member": 1}, {"age": None, "plan": "pro", "member": 0}]
        )
        lin = client.predict_rows("lin", np.eye(4, dtype=np.float32)[:2].tolist())
    assert typed == plain and len(lin["predictions"]) == 2
