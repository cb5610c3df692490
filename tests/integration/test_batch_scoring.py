"""Batch scoring end to end (issue 26): a real nats-server, the local store, ONNX Runtime.

A table model (one input per column, by name) and an older single-input model are registered here;
a CSV is uploaded through the ingest app; `POST /v1/scorings` and a drop under `score/` queue
jobs; the scorer writes predictions beside the id column; `/v1/jobs` shows the job like a training
and `/v1/jobs/{job}/output` returns the predictions.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper, numpy_helper

from fermion.events import Bus
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.s3_events import ingest_records
from fermion.functions.ingest.settings import IngestSettings
from fermion.functions.trainer.scoring import Scorer
from fermion.functions.trainer.settings import TrainerSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, Draft, KeyStore, Registry, Signature, TensorSpec
from fermion.model_store.features import Column, FeatureSchema
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

pytestmark = pytest.mark.integration

ROWS = 1000
TABLE = "customer_id,age,plan,smoker,churned\n" + "".join(
    f"c{i},{'' if i % 7 == 0 else 20 + i % 50},{'abc'[i % 3]},{'yes' if i % 2 else 'no'},"
    f"{'stay' if i % 3 else 'leave'}\n"
    for i in range(ROWS)
)
SCHEMA = FeatureSchema(
    columns=[
        Column(name="smoker", kind="boolean", datatype="FP32", true_values=["yes"]),
        Column(name="age", kind="integer", datatype="FP32", impute=40.0),
        Column(name="plan", kind="category", datatype="BYTES", categories=["a", "b", "c"]),
    ],
    label="churned",
    task="classification",
    classes=["leave", "stay"],
)


def _table_model() -> bytes:
    """Per-column inputs as the contract says: FP32 with NaN blanks, BYTES categories; logits and probabilities."""
    w = numpy_helper.from_array(np.array([[0.5, -0.5], [0.03, -0.02], [1.0, -1.0]], np.float32), "W")
    nodes = [
        helper.make_node("IsNaN", ["age"], ["blank"]),
        helper.make_node("Where", ["blank", "forty", "age"], ["aged"]),
        helper.make_node(
            "LabelEncoder",
            ["plan"],
            ["planned"],
            domain="ai.onnx.ml",
            keys_strings=["a", "b", "c"],
            values_floats=[0.0, 1.0, 2.0],
            default_float=-1.0,
        ),
        helper.make_node("Concat", ["smoker", "aged", "planned"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "table",
        [
            helper.make_tensor_value_info("smoker", TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info("age", TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info("plan", TensorProto.STRING, ["n", 1]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2]),
        ],
        [w, numpy_helper.from_array(np.array(40.0, np.float32), "forty")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _table_draft() -> Draft:
    inputs = [TensorSpec(name=c.name, datatype=c.datatype, shape=[-1, 1]) for c in SCHEMA.columns]
    outputs = [TensorSpec(name=n, datatype="FP32", shape=[-1, 2]) for n in ("logits", "probabilities")]
    return Draft(
        signature=Signature(inputs=inputs, outputs=outputs), labels=SCHEMA.classes, features=SCHEMA.model_dump()
    )


@pytest.fixture
async def ingest(
    nats_server: NatsServer, bus: Bus, registry: Registry, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url, max_upload_bytes=2_000_000)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: DatasetStore(registry.store)
    app.dependency_overrides[get_bus] = lambda: bus
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    headers = bearer(api_key(registry, "admin"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i", headers=headers) as c:
        yield c


@pytest.fixture
async def scorer(bus: Bus, registry: Registry, nats_server: NatsServer) -> AsyncIterator[None]:
    settings = TrainerSettings(nats_url=nats_server.url, ack_wait_s=10, max_deliver=3, retry_delay_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(Scorer(bus, registry, settings).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 10)


async def _ended(ingest: httpx.AsyncClient, job: str) -> dict[str, Any]:
    for _ in range(300):  # bounded: 30 s
        state = (await ingest.get(f"/v1/jobs/{job}")).json()
        if state.get("state") in ("completed", "failed"):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job} did not end: {state}")


def _expected(csv: bytes) -> np.ndarray:
    table = pcsv.read_csv(io.BytesIO(csv), convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    session = ort.InferenceSession(_table_model(), providers=["CPUExecutionProvider"])
    smoker = np.array([[1.0 if v == "yes" else 0.0] for v in table["smoker"].to_pylist()], np.float32)
    age = np.array([[np.nan if v is None else v] for v in table["age"].to_pylist()], np.float32)
    plan = np.array([[v] for v in table["plan"].to_pylist()], object)
    return session.run(["probabilities"], {"smoker": smoker, "age": age, "plan": plan})[0]


async def test_a_table_model_scores_an_uploaded_csv_by_column_name(
    ingest: httpx.AsyncClient, registry: Registry, scorer: None
) -> None:
    registry.register("default", "churn", {"model.onnx": _table_model()}, _table_draft())
    # Columns in another order than the model's inputs, the label left in: matched by name.
    r = await ingest.post("/v1/datasets", files={"file": ("customers.csv", TABLE.encode())})
    assert r.status_code == 201, r.text

    r = await ingest.post(
        "/v1/scorings",
        json={"model": "churn@latest", "dataset": {"name": "customers"}, "id_column": "customer_id", "chunk_rows": 300},
    )
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    assert r.json()["version"] == 1

    state = await _ended(ingest, job)
    assert (state["state"], state["kind"], state["rows_done"], state["rows"]) == ("completed", "scoring", ROWS, ROWS)
    assert state["output"] == f"scores/default/{job}.parquet"
    listed = {j["job_id"]: j for j in (await ingest.get("/v1/jobs")).json()}
    assert listed[job]["kind"] == "scoring"
    events = (await ingest.get(f"/v1/jobs/{job}/events", params={"wait_s": 0})).json()["events"]
    progress = [e["event"]["data"]["rows_done"] for e in events if e["event"]["type"] == "scoring.progress"]
    assert progress == [0, 300, 600, 900, 1000]

    out = await ingest.get(f"/v1/jobs/{job[:8]}/output")
    assert out.status_code == 200 and 'filename="' in out.headers["content-disposition"]
    scores = pq.read_table(io.BytesIO(out.content))
    assert scores.column_names == ["customer_id", "prediction", "probability", "probability_leave", "probability_stay"]
    assert scores["customer_id"].to_pylist() == [f"c{i}" for i in range(ROWS)]
    expected = _expected(TABLE.encode())
    got = np.column_stack([scores["probability_leave"].to_numpy(), scores["probability_stay"].to_numpy()])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert scores["prediction"].to_pylist() == [SCHEMA.classes[i] for i in expected.argmax(axis=1)]
    assert (await ingest.get(f"/v1/jobs/{job}/output-url")).status_code == 409  # a local directory cannot sign
    registry.store.delete(state["output"])  # the event outlives its file: a 404 that says so, not a 503
    gone = await ingest.get(f"/v1/jobs/{job}/output")
    assert gone.status_code == 404 and "no longer in the store" in gone.json()["error"], gone.text


async def test_an_older_single_input_model_scores_a_csv_drop_under_score(
    ingest: httpx.AsyncClient, registry: Registry, bus: Bus, scorer: None
) -> None:
    registry.register("default", "lin", {"model.onnx": linear_onnx(n_in=3, n_out=3)}, linear_draft(n_in=3, n_out=3))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    csv = "a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{i % 3}\n" for i, r in enumerate(x))
    key = "score/lin/fresh.csv"
    registry.store.put(key, csv.encode())
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"object": {"key": key}}}
    outcomes = await ingest_records([record], DatasetStore(registry.store), bus, registry)
    assert outcomes[0].startswith("stored score/lin/fresh.csv as datasets/default/fresh/")
    job = outcomes[1].rsplit(" ", 1)[-1]
    state = await _ended(ingest, job)
    assert state["state"] == "completed", state
    scores = pq.read_table(io.BytesIO((await ingest.get(f"/v1/jobs/{job}/output")).content))
    assert scores["row"].to_pylist() == list(range(50))
    logits = ort.InferenceSession(linear_onnx(n_in=3, n_out=3)).run(None, {"input": x})[0]
    assert scores["prediction"].to_pylist() == [str(i) for i in logits.argmax(axis=1)]


async def test_a_model_missing_a_column_fails_the_job_naming_it(
    ingest: httpx.AsyncClient, registry: Registry, scorer: None
) -> None:
    registry.register("default", "churn", {"model.onnx": _table_model()}, _table_draft())
    no_plan = "\n".join(",".join(line.split(",")[:2] + line.split(",")[3:]) for line in TABLE.splitlines())
    r = await ingest.post("/v1/datasets", files={"file": ("noplan.csv", no_plan.encode())})
    assert r.status_code == 201, r.text
    r = await ingest.post("/v1/scorings", json={"model": "churn", "dataset": {"name": "noplan"}, "format": "csv"})
    state = await _ended(ingest, r.json()["job_id"])
    assert state["state"] == "failed"
    assert "the table lacks the model's column(s) plan" in state["reason"]
    r = await ingest.post("/v1/scorings", json={"model": "churn", "dataset": {"name": "noplan"}, "id_column": "x"})
    assert r.status_code == 400 and "has no column 'x'" in r.json()["error"]
    r = await ingest.post("/v1/scorings", json={"model": "nosuch", "dataset": {"name": "noplan"}})
    assert r.status_code == 404
