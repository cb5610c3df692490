"""Bounded memory in inference: rows per request capped (413 naming the setting), large requests in chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import LoadedModel, ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


@pytest.fixture
def served(registry: Registry, tmp_path: Path) -> Iterator[tuple[TestClient, ModelRuntime]]:
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    settings = InferenceSettings(
        home=tmp_path,
        providers=["CPUExecutionProvider"],
        max_body_bytes=1 << 20,
        max_rows_per_request=5000,
        max_rows_per_run=300,
        batching=False,
    )
    runtime = ModelRuntime(registry, settings)
    headers = bearer(api_key(registry, "infer"))
    yield TestClient(create_app(lambda: runtime, lambda: settings), headers=headers), runtime


def _binary(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    import json

    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_a_request_over_the_row_limit_is_refused_naming_the_setting(served) -> None:
    client, _ = served
    body, headers = _binary(np.zeros((5001, 4), np.float32))
    r = client.post("/v2/models/lin/infer", content=body, headers=headers)
    assert r.status_code == 413, r.text
    assert "5001 rows" in r.json()["error"] and "FERMION_MAX_ROWS_PER_REQUEST" in r.json()["error"]


def test_a_large_request_runs_in_chunks_with_the_same_answer(served, monkeypatch: pytest.MonkeyPatch) -> None:
    client, runtime = served
    model = runtime.get(ModelRef.parse("lin"))
    runs: list[tuple[int, bool]] = []
    real_run = LoadedModel.run

    def counting(self: LoadedModel, feeds, outputs=None, *, shrink=False):  # type: ignore[no-untyped-def]
        runs.append((next(iter(feeds.values())).shape[0], shrink))
        return real_run(self, feeds, outputs, shrink=shrink)

    monkeypatch.setattr(LoadedModel, "run", counting)
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    body, headers = _binary(x)
    r = client.post("/v2/models/lin/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    expected = ort.InferenceSession(linear_onnx(seed=1), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(np.reshape(r.json()["outputs"][0]["data"], (1000, 3)), expected, rtol=1e-5)
    assert runs == [(300, False), (300, False), (300, False), (100, True)]  # the last chunk shrinks the arena
    assert model is runtime.get(ModelRef.parse("lin"))


def test_a_burst_of_large_requests_is_followed_by_one_malloc_trim() -> None:
    import asyncio

    from fermion.functions.inference.trim import LARGE_BODY, Trimmer

    async def scenario() -> int:
        from fermion.functions.inference.trim import _malloc_trim

        assert _malloc_trim() is not None, "glibc's malloc_trim is there on this platform"
        trimmer, calls = Trimmer(delay_s=0.05), []
        trimmer._trim = lambda: calls.append(1)
        trimmer.after(1000)  # a small request: nothing to give back
        await asyncio.sleep(0.1)
        assert calls == []
        for _ in range(5):  # a burst: one trim, after its last request
            trimmer.after(LARGE_BODY)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        return len(calls)

    assert asyncio.run(scenario()) == 1
