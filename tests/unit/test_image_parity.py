"""Served preprocessing equals trained preprocessing, picture for picture (JPEG, RGB, RGBA, 16-bit, palette).

Training side: the trainer reads the archive (fermion.imaging through training/pictures.py)
and its `ImageInput` layer normalises in torch. Serving side: the inference function decodes the
same files as a request's pictures (functions/inference/pictures.py) and the exported ONNX graph of
that layer normalises in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from fermion.compile import export_onnx
from fermion.events import ImageContract
from fermion.functions.inference.pictures import decode_pictures
from fermion.training.data import load_dataset
from fermion.training.pictures import ImageInput, fit_contract
from tests.helpers.pictures import jpeg, png, zip_bytes


def _pictures() -> dict[str, bytes]:
    rng = np.random.default_rng(7)

    def noise(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(0, 256, shape, dtype=np.uint8)

    pictures = {}
    for label in ("a", "b"):  # every kind in both classes: the trainer wants ten pictures or more
        pictures |= {
            f"{label}/gray.png": png(Image.fromarray(noise((28, 28)), "L")),
            f"{label}/rgb.jpg": jpeg(Image.fromarray(noise((30, 40, 3)), "RGB")),
            f"{label}/rgba.png": png(Image.fromarray(noise((16, 16, 4)), "RGBA")),
            f"{label}/deep.png": png(Image.fromarray(rng.integers(0, 65536, (20, 20), dtype=np.uint16))),
            f"{label}/palette.png": png(Image.fromarray(noise((33, 17, 3)), "RGB").convert("P")),
            f"{label}/small.jpeg": jpeg(Image.fromarray(noise((5, 7)), "L")),
        }
    return pictures


@pytest.mark.parametrize(
    "contract",
    [
        ImageContract(height=16, width=16, channels=3),
        ImageContract(height=12, width=20, channels=1, resize="bicubic"),
        ImageContract(height=16, width=16, channels=3, resize="lanczos", mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.4]),
    ],
    ids=["rgb-bilinear-fitted", "gray-bicubic-fitted", "rgb-lanczos-given"],
)
def test_serving_preprocessing_equals_training_preprocessing(tmp_path, contract: ImageContract) -> None:
    pictures = _pictures()
    (tmp_path / "set.zip").write_bytes(zip_bytes(pictures))
    trained = load_dataset(tmp_path / "set.zip", "zip", "label", contract)
    fitted = fit_contract(contract, trained.x)
    layer = ImageInput(fitted).eval()
    with torch.no_grad():
        train_side = layer(torch.from_numpy(trained.x)).numpy()

    served_pixels = decode_pictures(sorted(pictures.items()), fitted, 40_000_000)
    np.testing.assert_array_equal(served_pixels, trained.x)  # the one decode step, on both sides
    graph = export_onnx(layer, torch.from_numpy(served_pixels[:2])).onnx_bytes
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    serve_side = session.run(None, {"input": served_pixels})[0]

    assert serve_side.shape == (12, contract.channels, contract.height, contract.width)
    assert float(np.abs(serve_side - train_side).max()) <= 1e-6
    assert trained.labels == ["a", "b"] and list(trained.y) == [0] * 6 + [1] * 6
