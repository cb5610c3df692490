"""Pictures end to end on the real stack: digits as PNG files in class folders, zipped, uploaded with the
CLI and dropped into S3 `incoming/`; a CNN trained with an image contract; served pictures through
`fermion predict`, the `:predict` route and an OIP v2 BYTES request from tritonclient.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from fermion.events import Bus, DatasetUploaded, StoredMessage, parse_event
from fermion.infra import Stack, StackSettings
from fermion.infra.localstack import LocalStack
from tests.helpers import StackOptions, s3_client
from tests.helpers.pictures import bomb_png, digit_pictures, png, write_class_folders, zip_bytes, zip_folder

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack_options(localstack: LocalStack) -> StackOptions:
    """`fermion up`'s stack with its registry in a LocalStack bucket whose drops it ingests."""
    return StackOptions(localstack=localstack, bucket=f"pictures-{uuid.uuid4().hex[:10]}")


def _fermion(s: StackSettings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "200",
    }
    out = subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


async def _wait_for(stack: Stack, subject: str, needle: bytes, timeout_s: float = 60) -> StoredMessage:
    """The newest message on `subject` whose data holds `needle`, polling one connection."""
    bus = await Bus.from_settings(stack.identity.bus_settings("admin", stack.settings.nats_url), name="test")
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [m for m in await bus.history(subject) if needle in m.data]
                if found:
                    return found[-1]
                await asyncio.sleep(0.2)
    finally:
        await bus.close()


@pytest.mark.timeout(300)  # a training on a shared 2-core machine; about a minute unloaded
def test_digit_pictures_uploaded_trained_and_served(
    stack: Stack, stack_options: StackOptions, localstack: LocalStack, tmp_path: Path
) -> None:
    s, bucket = stack.settings, stack_options.bucket
    pictures, labels = digit_pictures(28)
    order = np.random.default_rng(3).permutation(len(pictures))
    held, train = order[:300], order[300:]
    write_class_folders(tmp_path / "train", [pictures[i] for i in train], labels[train])
    archive = zip_folder(tmp_path / "train", tmp_path / "digits.zip")
    held_files = write_class_folders(tmp_path / "held", [pictures[i] for i in held], labels[held])
    held_labels = [p.parent.name for p in held_files]

    # The S3 drop: a good archive stored and announced; a decompression bomb dead-lettered with its reason.
    s3 = s3_client(localstack.endpoint_url)
    s3.upload_file(str(archive), bucket, "incoming/dropped-digits.zip")
    s3.put_object(Bucket=bucket, Key="incoming/bomb.zip", Body=zip_bytes({"a/1.png": bomb_png(), "b/1.png": b""}))

    # The CLI: upload the same archive, train a CNN with an image contract (28x28 pictures resized to 8x8).
    ref = json.loads(_fermion(s, "upload", str(archive), "--name", "digits", "-o", "json").stdout)
    assert (ref["format"], ref["name"]) == ("zip", "digits")
    trained = _fermion(
        s, "train", "digits", "--dataset", "digits", "--architecture", "cnn", "--epochs", "8",
        "--learning-rate", "0.002", "--image-size", "8", "--channels", "1", "--follow", timeout=300,
    )  # fmt: skip
    assert "digits version 1" in trained.stdout, trained.stdout[-2000:]

    dropped = asyncio.run(_wait_for(stack, "fermion.datasets.uploaded", b"dropped-digits"))
    event = parse_event(dropped.data, DatasetUploaded)
    assert event.data.sha256 == ref["sha256"] and event.data.format == "zip"  # same bytes, by either door
    refused = asyncio.run(_wait_for(stack, "fermion.dlq.datasets.uploaded", b"bomb.zip"))
    reason = refused.headers["Fermion-Reason"]
    assert "a/1.png: refused before decoding" in reason

    auth = {"Authorization": f"Bearer {stack.identity.admin_key()}"}
    # 1. `fermion predict` on a folder of held-out PNG files.
    answer = json.loads(_fermion(s, "predict", "digits", "--input", str(tmp_path / "held")).stdout)
    by_file = {Path(a["file"]).name: a["label"] for a in answer}
    accuracy = np.mean([by_file[p.name] == label for p, label in zip(held_files, held_labels, strict=True)])
    assert accuracy >= 0.95, accuracy

    # 2. The :predict route with base64 pictures in JSON.
    blobs = [p.read_bytes() for p in held_files]
    r = httpx.post(
        f"{s.inference_url}/v1/models/digits:predict",
        json={"instances": [{"b64": base64.b64encode(b).decode()} for b in blobs]},
        headers=auth,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert np.mean(np.asarray(r.json()["labels"]) == np.asarray(held_labels)) >= 0.95
    first = r.json()["predictions"][0]
    assert set(first["probabilities"]) == {str(d) for d in range(10)}

    # 3. Open Inference Protocol v2: encoded pictures as a BYTES tensor, from tritonclient unchanged.
    client = triton.InferenceServerClient(url=s.inference_url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("input", [len(blobs)], "BYTES")
        tensor.set_data_from_numpy(np.asarray(blobs, dtype=object), binary_data=True)
        logits = client.infer("digits", [tensor], headers=dict(auth)).as_numpy("logits")
        meta = client.get_model_metadata("digits", headers=dict(auth))
    finally:
        client.close()
    predicted = [meta["parameters"]["labels"][i] for i in logits.argmax(1)]
    assert np.mean(np.asarray(predicted) == np.asarray(held_labels)) >= 0.95
    contract = meta["parameters"]["image"]
    assert (contract["height"], contract["width"], contract["channels"], contract["resize"]) == (8, 8, 1, "bilinear")
    assert meta["inputs"][0]["shape"] == [-1, 8, 8, 1]

    # A bad picture to the served model: a 400 naming it, and nothing crashed.
    r = httpx.post(
        f"{s.inference_url}/v1/models/digits:predict",
        files=[("files", ("good.png", blobs[0])), ("files", ("truncated.png", png(pictures[0])[:60]))],
        headers=auth,
    )
    assert r.status_code == 400 and "picture truncated.png" in r.json()["error"]
    assert stack.failed() == []
