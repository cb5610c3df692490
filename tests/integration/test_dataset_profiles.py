"""Dataset profiles at upload (issue 26): typed columns, the label guess, refusals, GET /v1/datasets."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fermion.events import Bus
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, Registry
from tests.helpers import api_key, bearer

pytestmark = pytest.mark.integration

CHURN = "customer_id,age,plan,smoker,notes,country,churned\n" + "".join(
    f"{i},{'' if i % 7 == 0 else 20 + i % 50},{'abc'[i % 3]},{'yes' if i % 2 else 'no'},note {i},nl,"
    f"{'stay' if i % 3 else 'leave'}\n"
    for i in range(300)
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
    transport = httpx.ASGITransport(app=app)
    headers = bearer(api_key(registry, "admin"))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client:
        yield client


async def test_a_csv_upload_is_profiled_stored_with_it_and_listed(
    ingest: httpx.AsyncClient, registry: Registry
) -> None:
    r = await ingest.post(
        "/v1/datasets", files={"file": ("churn.csv", CHURN.encode())}, data={"label_column": "churned"}
    )
    assert r.status_code == 201, r.text
    profile = r.json()["profile"]
    assert profile["rows"] == 300
    kinds = {c["name"]: c["kind"] for c in profile["columns"]}
    assert kinds == {
        "customer_id": "integer",
        "age": "integer",
        "plan": "category",
        "smoker": "boolean",
        "notes": "text",
        "country": "category",
        "churned": "category",
    }
    assert {c["name"]: c["missing"] for c in profile["columns"]}["age"] == 43
    assert profile["used"] == ["age", "plan", "smoker"]
    assert profile["dropped"] == {
        "customer_id": "id",
        "notes": "text or id-like: 300 distinct values in 300 rows",
        "country": "constant: one distinct value",
    }
    assert profile["label"] == {
        "column": "churned",
        "task": "classification",
        "missing": 0,
        "classes": {"stay": 200, "leave": 100},
        "target": None,
    }
    sha = r.json()["sha256"]
    assert registry.store.get(f"datasets/default/churn/{sha}.profile.json")[0]

    listed = (await ingest.get("/v1/datasets")).json()
    (mine,) = [d for d in listed if d["name"] == "churn"]
    assert (mine["rows"], mine["columns"], mine["label"], mine["task"]) == (300, 7, "churned", "classification")
    shown = (await ingest.get("/v1/datasets/churn")).json()
    assert shown["profile"] == profile and shown["sha256"] == sha
    assert (await ingest.get("/v1/datasets/nosuch")).status_code == 404


async def test_parquet_uploads_and_regression_labels(ingest: httpx.AsyncClient) -> None:
    buf = io.BytesIO()
    x = [float(i % 17) for i in range(200)]
    pq.write_table(pa.table({"x": x, "flag": [i % 2 == 0 for i in range(200)], "target": [v * 2.5 for v in x]}), buf)
    r = await ingest.post("/v1/datasets", files={"file": ("Prices.parquet", buf.getvalue())})
    assert r.status_code == 201, r.text
    assert r.json()["format"] == "parquet"
    label = r.json()["profile"]["label"]
    assert (label["column"], label["task"], label["target"]["min"], label["target"]["max"]) == (
        "target",
        "regression",
        0.0,
        40.0,
    )


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("id,label\n1,a\n2,b\n3,a\n", "no column a model can use besides the label 'label' (id: id)"),
        ("a,b,label\n1,2,x\n3,4,x\n", "the label column 'label' has 1 class(es): a classifier needs two"),
        ("a,b\n1,2.5\n3,2.5\n", "the label column 'b' has one value: nothing to regress"),
    ],
)
async def test_a_table_no_model_can_train_on_is_refused_and_nothing_is_kept(
    ingest: httpx.AsyncClient, registry: Registry, csv: str, message: str
) -> None:
    r = await ingest.post("/v1/datasets", files={"file": ("hopeless.csv", csv.encode())})
    assert r.status_code == 400
    assert message in r.json()["error"]
    assert not list(registry.store.list("datasets/default/hopeless/"))
