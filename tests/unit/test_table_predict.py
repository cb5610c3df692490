"""`:predict` on table models (columns by name), multi-input graphs, and the answers people can use.

Real models registered in a local-directory registry, served by the real inference app over real ONNX
Runtime sessions; the test models follow the graph contract of model_store/features.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx
from tests.helpers.tables import CLASSES, table_draft, table_onnx, two_input_draft, two_input_onnx

ROWS = [
    {"id": 1, "age": 31.0, "plan": "plus", "member": "yes", "outcome": "stay"},
    {"id": 2, "age": None, "plan": "basic", "member": "no", "outcome": "churn"},
    {"id": 3, "age": 58.5, "plan": "pro", "member": True, "outcome": "upgrade"},
    {"id": 4, "age": "", "plan": None, "member": "", "outcome": "stay"},
    {"id": 5, "age": 22, "plan": "enterprise", "member": 0, "outcome": "churn"},
]
ORDER = ["age", "plan", "member"]


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    registry.register("default", "churn", {"model.onnx": table_onnx()}, table_draft())
    registry.register("default", "spend", {"model.onnx": table_onnx("regression")}, table_draft("regression"))
    registry.register("default", "text", {"model.onnx": two_input_onnx()}, two_input_draft())
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    yield TestClient(create_app(lambda: runtime, lambda: settings), headers=bearer(api_key(registry, "infer")))


def _reference(model: bytes, rows: list[list]) -> dict[str, np.ndarray]:
    """What ONNX Runtime answers for rows already prepared as the contract says (NaN blanks, 0/1, "")."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {
        "age": np.asarray([[r[0]] for r in rows], np.float32),
        "plan": np.asarray([[r[1]] for r in rows], object),
        "member": np.asarray([[r[2]] for r in rows], np.float32),
    }
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


PREPARED = [
    [31.0, "plus", 1.0],
    [np.nan, "basic", 0.0],
    [58.5, "pro", 1.0],
    [np.nan, "", np.nan],
    [22.0, "enterprise", 0.0],
]


def test_columns_by_name_in_any_order_with_the_label_left_in_answer_as_ordered_rows(client: TestClient) -> None:
    ordered = [[r[c] for c in ORDER] for r in ROWS]
    shuffled = []
    for r in ROWS:
        keys = list(r)
        random.Random(r["id"]).shuffle(keys)
        shuffled.append({k: r[k] for k in keys})
    by_position = client.post("/v1/models/churn:predict", json={"instances": ordered})
    by_name = client.post("/v1/models/churn:predict", json={"instances": shuffled})
    assert by_position.status_code == 200, by_position.text
    assert by_name.status_code == 200, by_name.text
    answer = by_name.json()
    assert answer == by_position.json()
    assert set(answer) == {"model_name", "model_version", "predictions", "probabilities", "classes"}
    assert answer["classes"] == CLASSES
    expected = _reference(table_onnx(), PREPARED)["probabilities"]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6)
    np.testing.assert_allclose(np.sum(answer["probabilities"], axis=1), 1.0, atol=1e-6)
    assert answer["predictions"] == [CLASSES[k] for k in expected.argmax(axis=1)]


def test_a_missing_and_an_unknown_column_are_refused_by_name(client: TestClient) -> None:
    r = client.post("/v1/models/churn:predict", json={"instances": [{"age": 3, "plan": "pro", "colour": "red"}]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "missing column(s) 'member'" in error and "unknown column(s) 'colour'" in error, error
    short = client.post("/v1/models/churn:predict", json={"instances": [[3.0, "pro"]]})
    assert short.status_code == 400 and "'age', 'plan', 'member'" in short.json()["error"], short.text


def test_blanks_booleans_and_numbers_as_text_are_read_as_the_columns_take_them(client: TestClient) -> None:
    def answer(row: dict) -> list[float]:
        r = client.post("/v1/models/churn:predict", json={"instances": [row]})
        assert r.status_code == 200, r.text
        return r.json()["probabilities"][0]

    base = {"age": 40.0, "plan": "plus", "member": 1}
    for member in (True, "yes", "Y", "true", "1", 1, " TRUE "):
        assert answer({**base, "member": member}) == answer(base)
    assert answer({**base, "age": None}) == answer({**base, "age": ""}) == answer({**base, "age": 40})  # imputed
    assert answer({**base, "age": "40"}) == answer(base)
    for bad, column in (({**base, "member": "maybe"}, "member"), ({**base, "age": "old"}, "age")):
        r = client.post("/v1/models/churn:predict", json={"instances": [bad]})
        assert r.status_code == 400 and repr(column) in r.json()["error"], r.text


def test_a_regression_answers_values_in_the_labels_units(client: TestClient) -> None:
    rows = [{"spend": 120.0, **{c: r[c] for c in ORDER}} for r in ROWS]
    r = client.post("/v1/models/spend:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"model_name", "model_version", "predictions"}
    expected = _reference(table_onnx("regression"), PREPARED)["prediction"][:, 0]
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-6)


def test_a_two_input_int64_graph_takes_objects_keyed_by_input_name(client: TestClient) -> None:
    rows = [
        {"input_ids": [1, 2, 3, 4], "attention_mask": [1, 1, 0, 0]},
        {"attention_mask": [1, 1, 1, 1], "input_ids": [0, 0, 0, 0]},
    ]
    r = client.post("/v1/models/text:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["classes"] == ["negative", "positive"]
    assert answer["predictions"] == ["negative", "negative"]  # logits (1.5, -1.5) and (0, 0): argmax is the first
    np.testing.assert_allclose(answer["probabilities"][0], [1 / (1 + np.exp(-3.0)), 1 / (1 + np.exp(3.0))], rtol=1e-6)
    np.testing.assert_allclose(answer["probabilities"][1], [0.5, 0.5])
    for bad, words in (
        ([{"input_ids": [1, 2, 3, 4]}], "lacks input 'attention_mask'"),
        ([{"input_ids": [1, 2, 3.5, 4], "attention_mask": [1, 1, 1, 1]}], "'input_ids' takes INT64 values; got 3.5"),
        ([{"input_ids": [1, 2, "x", 4], "attention_mask": [1, 1, 1, 1]}], "got 'x'"),
        ([{"input_ids": [1, 2], "attention_mask": [1, 1]}], "must have shape"),
        ([[1, 2, 3, 4]], "object keyed by input name (input_ids, attention_mask)"),
    ):
        refused = client.post("/v1/models/text:predict", json={"instances": bad})
        assert refused.status_code == 400 and words in refused.json()["error"], refused.text


def test_an_older_classifier_answers_class_names_and_a_softmax_of_its_output(client: TestClient) -> None:
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    r = client.post("/v1/models/lin:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    logits = ort.InferenceSession(linear_onnx(seed=1)).run(None, {"input": x})[0]
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    answer = r.json()
    assert answer["classes"] == ["0", "1", "2"] and answer["predictions"] == [str(i) for i in logits.argmax(1)]
    np.testing.assert_allclose(answer["probabilities"], softmax, rtol=1e-5)
    named = client.post("/v1/models/lin:predict", json={"instances": [{"input": row} for row in x.tolist()]})
    assert named.json() == answer  # a single-input graph takes objects keyed by its input name too


@pytest.mark.parametrize(
    "instances",
    [
        [{"age": {"deep": 1}, "plan": "pro", "member": 1}],
        [{"age": 1, "plan": ["pro"], "member": 1}],
        [{"age": 1, "plan": "pro", "member": 7}],
        [{"age": 1, "plan": "pro", "member": 1}, [1, "pro", 1, 9]],
        [[]],
        [{}],
    ],
)
def test_whatever_the_rows_the_answer_is_never_a_server_error(client: TestClient, instances: list) -> None:
    for model in ("churn", "spend", "text", "lin"):
        r = client.post(f"/v1/models/{model}:predict", json={"instances": instances})
        assert r.status_code in (200, 400), (model, r.text)


def test_an_oip_client_sends_one_tensor_per_column_and_gets_the_same_probabilities(client: TestClient) -> None:
    rows = [[31.0, "plus", 1.0], [58.5, "pro", 0.0]]
    body = {
        "inputs": [
            {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [r[0] for r in rows]},
            {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": [r[1] for r in rows]},  # text, as KServe's
            {"name": "member", "shape": [2, 1], "datatype": "FP32", "data": [r[2] for r in rows]},
        ]
    }
    r = client.post("/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert set(outputs) == {"logits", "probabilities"}  # the outputs stay as the graph has them
    predicted = client.post("/v1/models/churn:predict", json={"instances": rows}).json()
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, 3)), predicted["probabilities"])
    body["inputs"][1]["data"] = [1, 2]
    refused = client.post("/v2/models/churn/infer", json=body)
    assert refused.status_code == 400 and "must be strings" in refused.json()["error"], refused.text
    # The binary tensor extension, as tritonclient sends BYTES: each element its length, then UTF-8 text.
    blob = b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in ("plus", "pro"))
    sized = {"binary_data_size": len(blob)}
    body["inputs"][1] = {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "parameters": sized}
    header = json.dumps(body).encode()
    binary = client.post(
        "/v2/models/churn/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
    )
    assert binary.status_code == 200, binary.text
    got = {o["name"]: o for o in binary.json()["outputs"]}["probabilities"]["data"]
    np.testing.assert_allclose(np.reshape(got, (2, 3)), predicted["probabilities"])
