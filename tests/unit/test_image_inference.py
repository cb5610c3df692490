"""Pictures in, predictions out: the inference function over a real picture model and real sessions."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from fermion.compile import export_onnx
from fermion.events import ImageContract, Recipe
from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.imaging import decode
from fermion.model_store import Draft, LocalDirStore, Registry, Signature, TensorSpec
from fermion.training.data import Dataset
from fermion.training.loop import train
from tests.helpers import api_key, bearer, linear_draft, linear_onnx
from tests.helpers.pictures import bomb_png, gif, jpeg, png

CONTRACT = ImageContract(height=8, width=8, channels=1)


def _picture(label: int, seed: int) -> Image.Image:
    """Class 0: bright left half; class 1: bright right half; plus noise."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, (16, 16), dtype=np.uint8)
    pixels[:, 8 * label : 8 * label + 8] += 180
    return Image.fromarray(pixels, "L")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("pictures")
    labels = np.arange(40) % 2
    x = np.stack([decode(png(_picture(int(c), i)), CONTRACT) for i, c in enumerate(labels)]).astype(np.float32)
    trained = train(Dataset(x, labels, ["left", "right"], CONTRACT), Recipe(architecture="cnn", epochs=3))
    onnx_bytes = export_onnx(trained.module, torch.from_numpy(x[:2])).onnx_bytes
    registry = Registry(LocalDirStore(home / "store"), home / "cache")
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 8, 8, 1])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 2])],
        ),
        labels=trained.labels,
        image=trained.image.model_dump() if trained.image else None,
    )
    registry.register("default", "halves", {"model.onnx": onnx_bytes}, draft)
    registry.register("default", "lin", {"model.onnx": linear_onnx()}, linear_draft())
    settings = InferenceSettings(home=home, providers=["CPUExecutionProvider"], max_picture_pixels=1_000_000)
    runtime = ModelRuntime(registry, settings)
    yield TestClient(create_app(lambda: runtime, lambda: settings), headers=bearer(api_key(registry, "infer")))


def _raw_logits(client: TestClient, pictures: list[bytes]) -> np.ndarray:
    pixels = np.stack([decode(p, CONTRACT) for p in pictures]).astype(np.float32)
    body = {
        "inputs": [{"name": "input", "shape": list(pixels.shape), "datatype": "FP32", "data": pixels.ravel().tolist()}]
    }
    r = client.post("/v2/models/halves/infer", json=body)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(len(pictures), 2)


def test_multipart_and_base64_pictures_get_labels_and_probabilities(served: TestClient) -> None:
    pictures = [png(_picture(0, 100)), jpeg(_picture(1, 101).convert("RGB"))]
    files = [("files", ("left.png", pictures[0], "image/png")), ("files", ("right.jpg", pictures[1], "image/jpeg"))]
    by_files = served.post("/v1/models/halves:predict", files=files)
    assert by_files.status_code == 200, by_files.text
    answer = by_files.json()
    assert answer["labels"] == ["left", "right"]
    first = answer["predictions"][0]
    assert first["name"] == "left.png" and first["label"] == "left" and first["index"] == 0
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-5 and first["probability"] > 0.5
    logits = _raw_logits(served, pictures)  # the raw-tensor path agrees with the picture path
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = [[p["probabilities"]["left"], p["probabilities"]["right"]] for p in answer["predictions"]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)

    instances = [{"b64": base64.b64encode(p).decode()} for p in pictures]
    by_json = served.post("/v1/models/halves:predict", json={"instances": instances})
    assert by_json.status_code == 200, by_json.text
    assert by_json.json()["labels"] == ["left", "right"]
    meta = served.get("/v2/models/halves").json()
    assert meta["parameters"]["image"]["height"] == 8 and len(meta["parameters"]["image"]["mean"]) == 1


def test_oip_bytes_tensors_binary_and_base64_json(served: TestClient) -> None:
    pictures = [png(_picture(1, 7)), png(_picture(0, 8))]
    blob = b"".join(struct.pack("<I", len(p)) + p for p in pictures)
    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}
            ]
        }
    ).encode()
    r = served.post(
        "/v2/models/halves/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    logits = np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 2)
    np.testing.assert_allclose(logits, _raw_logits(served, pictures), rtol=1e-5)
    b64 = [base64.b64encode(p).decode() for p in pictures]
    r = served.post(
        "/v2/models/halves/infer",
        json={"inputs": [{"name": "input", "shape": [2, 1], "datatype": "BYTES", "data": b64}]},
    )
    assert r.status_code == 200, r.text
    assert list(np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 2).argmax(1)) == [1, 0]


@pytest.mark.parametrize(
    ("picture", "problem"),
    [
        (png(_picture(0, 1))[:150], "picture bad.png: PNG does not decode"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "picture bad.png: a PNG or JPEG whose header is corrupt"),
        (bomb_png(100_000, 100_000), "picture bad.png: refused before decoding"),
        (bomb_png(2000, 2000), "picture bad.png: PNG of 2000x2000 = 4000000 pixels is over the limit of 1000000"),
        (gif(_picture(0, 1)), "picture bad.png: unsupported format GIF"),
        (b"", "picture bad.png: the file is empty"),
    ],
    ids=["truncated", "corrupt", "bomb", "over-limit", "gif", "empty"],
)
def test_bad_pictures_are_a_400_naming_the_picture_and_problem(
    served: TestClient, picture: bytes, problem: str
) -> None:
    files = [("files", ("good.png", png(_picture(0, 2)), "image/png")), ("files", ("bad.png", picture, "image/png"))]
    r = served.post("/v1/models/halves:predict", files=files)
    assert r.status_code == 400 and problem in r.json()["error"], r.text


def test_requests_that_are_not_pictures_are_a_400(served: TestClient) -> None:
    r = served.post("/v1/models/halves:predict", json={"instances": [{"b64": "***"}]})
    assert r.status_code == 400 and "instances[0] is not valid base64" in r.json()["error"]
    r = served.post("/v1/models/lin:predict", files=[("files", ("a.png", png(_picture(0, 1)), "image/png"))])
    assert r.status_code == 400 and "was not trained on pictures" in r.json()["error"]
    bad = {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}]}
    r = served.post("/v2/models/halves/infer", json=bad)
    assert r.status_code == 400 and "input[0]: not a PNG or JPEG picture" in r.json()["error"]
    blob = struct.pack("<I", 99) + b"short"
    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}
            ]
        }
    ).encode()
    r = served.post(
        "/v2/models/halves/infer", content=header + blob, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert r.status_code == 400 and "runs past the end" in r.json()["error"]
    assert served.post("/v1/models/halves:predict", json={"instances": [[0.0] * 64]}).status_code == 400


def test_a_model_on_features_never_pays_for_pictures_at_cold_start() -> None:
    code = (
        "import sys\n"
        "import fermion.functions.inference.app, fermion.functions.inference.handler\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'nats') or m == 'fermion.events.bus')\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
