"""One pipeline for every route that runs a model: each route counted alike; no import loops in the function."""

from __future__ import annotations

import ast
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from fermion.events import ImageContract
from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Draft, Registry, Signature, TensorSpec
from tests.helpers import api_key, bearer, linear_draft, linear_onnx
from tests.helpers.models import model_bytes

INFERENCE = Path(__file__).resolve().parents[2] / "functions" / "inference"
REQUESTS = "fermion_inference_requests_total"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def picture_onnx(side: int = 8) -> bytes:
    """A real ONNX model on pictures (N x side x side x 1 pixels, 0-255 → dark/light logits), without torch."""
    mean = np.full((side * side, 1), 1 / (side * side), np.float32)
    w = numpy_helper.from_array(np.hstack([-mean, mean]), "W")
    b = numpy_helper.from_array(np.array([128, -128], np.float32), "B")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pictures",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", side, side, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [w, b],
    )
    return model_bytes(graph)


def png(value: int, side: int = 8) -> bytes:
    """A grey square as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), value, np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def client(registry: Registry, tmp_path: Path) -> Iterator[TestClient]:
    registry.register("default", "lin", {"model.onnx": linear_onnx()}, linear_draft())
    signature = Signature(
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 8, 8, 1])],
        outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 2])],
    )
    contract = ImageContract(height=8, width=8, channels=1).model_dump()
    draft = Draft(signature=signature, labels=["dark", "light"], image=contract)
    registry.register("default", "pics", {"model.onnx": picture_onnx()}, draft)
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    with TestClient(create_app(lambda: runtime, lambda: settings), headers=bearer(api_key(registry, "infer"))) as c:
        yield c


def scrape(client: TestClient, registry: Registry) -> Samples:
    """Every sample of `/metrics` by (name, sorted labels)."""
    r = client.get("/metrics", headers=bearer(api_key(registry, "read")))
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How far the samples of `name` matching `labels` moved."""
    wanted = set(labels.items())

    def total(m: Samples) -> float:
        return sum(v for (n, ls), v in m.items() if n == name and wanted <= set(ls))

    return total(after) - total(before)


def test_every_predict_call_is_counted_as_an_infer_is(client: TestClient, registry: Registry) -> None:
    rows = {"instances": [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0]]}
    tensor = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 8}]}
    files = [("files", ("dark.png", png(10), "image/png")), ("files", ("light.png", png(240), "image/png"))]
    before = scrape(client, registry)
    for _ in range(3):
        assert client.post("/v1/models/lin:predict", json=rows).status_code == 200
    assert client.post("/v1/models/lin@latest:predict", json=rows).status_code == 200
    assert client.post("/v2/models/lin/infer", json=tensor).status_code == 200
    for _ in range(2):
        r = client.post("/v1/models/pics:predict", files=files)
        assert r.status_code == 200, r.text
        assert r.json()["labels"] == ["dark", "light"]
    b64 = {"instances": [{"b64": base64.b64encode(png(9)).decode()}]}
    assert client.post("/v1/models/pics:predict", json=b64).status_code == 200
    assert client.post("/v1/models/lin:predict", json={"instances": [[1.0]]}).status_code == 400
    assert client.post("/v1/models/lin:predict", json=rows, headers={"Authorization": "Bearer nope"}).status_code == 401
    after = scrape(client, registry)

    ok = {"status": "200", "version": "1"}
    assert moved(before, after, REQUESTS, model="lin", alias="production", **ok) == 4  # 3 :predict + 1 infer
    assert moved(before, after, REQUESTS, model="lin", alias="latest", **ok) == 1
    assert moved(before, after, REQUESTS, model="pics", alias="production", **ok) == 3  # multipart and base64
    assert moved(before, after, "fermion_inference_request_duration_seconds_count", model="lin") == 5
    assert moved(before, after, "fermion_inference_request_duration_seconds_count", model="pics") == 3
    assert moved(before, after, "fermion_inference_rows_total", model="pics") == 5
    refused = "fermion_inference_refused_requests_total"
    assert moved(before, after, refused, reason="BadRequest", status="400") == 1
    assert moved(before, after, refused, reason="Unauthorized", status="401") == 1
    assert moved(before, after, REQUESTS, model="", status="400") == 1
    assert moved(before, after, REQUESTS) == 10


def test_every_route_that_runs_a_model_says_which_version_answered(client: TestClient) -> None:
    rows = client.post("/v1/models/lin:predict", json={"instances": [[1.0, 2.0, 3.0, 4.0]]})
    pictures = client.post("/v1/models/pics:predict", files=[("files", ("a.png", png(10), "image/png"))])
    tensor = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4}]}
    infer = client.post("/v2/models/lin/infer", json=tensor)
    assert [r.headers.get("fermion-model-version") for r in (rows, pictures, infer)] == ["1", "1", "1"]


def _imports(path: Path) -> set[str]:
    """The sibling modules `path` imports anywhere: at the top, in a function, under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name.startswith("fermion.functions.inference."):
                    found.add(name.split(".")[3])
    return found


def test_the_inference_modules_import_each_other_without_a_loop() -> None:
    graph = {p.stem: _imports(p) - {p.stem} for p in INFERENCE.glob("*.py")}
    loops, done, path = [], set(), []

    def visit(module: str) -> None:
        if module in path:
            loops.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert not loops, [" → ".join(loop) for loop in loops]
    assert "control" not in graph["pipeline"] and "app" not in graph["control"]
