"""A signature vouches for a version at its place; ingest verifies; the unpacked version folder is checked.

Issue 25: copying tenant A's signed manifest to tenant B's `iris/versions/10` made B serve A's model;
ingest showed a tampered manifest's metrics; a rewritten `weights.bin` in the cache's unpacked
version folder changed what a model answered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper

from fermion.functions.inference.app import create_app as inference_app
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.functions.ingest.app import create_app as ingest_app
from fermion.functions.ingest.deps import get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.model_store import (
    Draft,
    IntegrityError,
    KeyStore,
    Registry,
    Signature,
    StoreSettings,
    TensorSpec,
    generate_key_pair,
    open_registry,
)
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

ROW = np.ones((1, 4), np.float32)


def _signed(home: Path) -> Registry:
    """A registry that signs (the stack's key under HOME/keys) and verifies, as trainers and inference do."""
    generate_key_pair(home / "keys")
    return open_registry(StoreSettings(home=home, verify_signatures=True))


def _copy_version(registry: Registry, source: str, target: str) -> None:
    """What anyone who can write to the bucket can do without the signing key."""
    for filename in ("manifest.json", "signature.json"):
        raw, _ = registry.store.get(f"models/{source}/{filename}")
        registry.store.put(f"models/{target}/{filename}", raw)


def _infer(client: TestClient, path: str, tenant: str, registry: Registry):  # type: ignore[no-untyped-def]
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW.ravel().tolist()}]}
    return client.post(path, json=body, headers=bearer(api_key(registry, "infer", tenant=tenant)))


def test_a_signed_manifest_copied_to_another_tenant_is_refused_by_inference(tmp_path: Path) -> None:
    registry = _signed(tmp_path)
    registry.register("a", "iris", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    for _ in range(9):
        registry.register("b", "iris", {"model.onnx": linear_onnx(seed=2)}, linear_draft())
    _copy_version(registry, "a/iris/versions/1", "b/iris/versions/10")
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    client = TestClient(inference_app(lambda: ModelRuntime(registry, settings), lambda: settings))

    r = _infer(client, "/v2/models/iris/versions/10/infer", "b", registry)
    assert r.status_code == 503, r.text  # it answered with tenant a's model
    assert "b/iris version 10 holds the manifest of a/iris version 1" in r.json()["error"]
    assert _infer(client, "/v2/models/iris/versions/9/infer", "b", registry).status_code == 200


def test_a_version_replayed_under_a_later_number_is_refused(tmp_path: Path) -> None:
    registry = _signed(tmp_path)
    for seed in (1, 2):
        registry.register("default", "lin", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    _copy_version(registry, "default/lin/versions/1", "default/lin/versions/3")  # a rollback in disguise
    _copy_version(registry, "default/lin/versions/1", "default/other/versions/1")
    with pytest.raises(IntegrityError, match="default/lin version 3 holds the manifest of default/lin version 1"):
        registry.manifest("default", "lin", 3)
    with pytest.raises(IntegrityError, match="default/other version 1 holds the manifest of default/lin version 1"):
        registry.lookup("default", "other:1")
    assert registry.manifest("default", "lin", 2).version == 2


def _ingest(home: Path) -> tuple[TestClient, Registry]:
    """The ingest app as deployed: its registry opened from its own settings (deps.get_registry)."""
    generate_key_pair(home / "keys")
    settings = IngestSettings(home=home, nats_url="nats://127.0.0.1:1", metrics=False)
    registry = open_registry(settings)
    app = ingest_app(lambda: settings)
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    return TestClient(app, headers=bearer(api_key(registry, "read"))), registry


def test_ingest_refuses_to_show_a_tampered_relocated_or_unsigned_manifest(tmp_path: Path) -> None:
    client, registry = _ingest(tmp_path)
    for seed in (1, 2, 3, 4):
        registry.register("default", "lin", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    prefix = "models/default/lin/versions"
    raw, _ = registry.store.get(f"{prefix}/1/manifest.json")
    registry.store.put(f"{prefix}/1/manifest.json", raw.replace(b'"accuracy": 0.5', b'"accuracy": 0.987654321'))
    _copy_version(registry, "default/lin/versions/2", "default/lin/versions/5")
    registry.store.delete(f"{prefix}/3/signature.json")

    for version, reason in ((1, "does not match its signature"), (5, "holds the manifest of"), (3, "is not signed")):
        r = client.get(f"/v1/models/lin/versions/{version}")
        assert r.status_code == 503, (version, r.text)
        assert reason in r.json()["error"] and "0.987654321" not in r.text  # more digits than a timestamp's
    assert client.get("/v1/models/lin/versions/4").json()["metrics"] == {"accuracy": 0.5}

    listing = client.get("/v1/models/lin")
    assert listing.status_code == 200, listing.text
    versions = {v["version"]: v for v in listing.json()["versions"]}
    assert sorted(versions) == [1, 2, 3, 4, 5]  # listed, but what a refused one says is not shown
    assert "0.987654321" not in listing.text
    assert "does not match its signature" in versions[1]["refused"] and versions[1]["metrics"] == {}
    assert "is not signed" in versions[3]["refused"]
    assert versions[4]["metrics"] == {"accuracy": 0.5} and versions[4]["refused"] is None


def _with_external_data(seed: int) -> dict[str, bytes]:
    """model.onnx and its weights.bin (every initializer outside the graph), as `models push` stores them."""
    model = onnx.load_from_string(linear_onnx(seed=seed))
    weights = b""
    for tensor in model.graph.initializer:
        data = numpy_helper.to_array(tensor).tobytes()
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", "weights.bin"), ("offset", str(len(weights))), ("length", str(len(data)))):
            tensor.external_data.add(key=key, value=value)
        weights += data
    return {"model.onnx": model.SerializeToString(), "weights.bin": weights}


def _draft() -> Draft:
    return Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 4])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 3])],
        )
    )


def test_a_rewritten_file_in_the_unpacked_version_folder_is_not_served(tmp_path: Path) -> None:
    registry = _signed(tmp_path)
    registry.register("default", "ext", _with_external_data(seed=1), _draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    expected = ort.InferenceSession(linear_onnx(seed=1)).run(None, {"input": ROW})[0]
    out = ModelRuntime(registry, settings).get(ModelRef("ext")).run({"input": ROW})["logits"]
    np.testing.assert_allclose(out, expected, rtol=1e-5)

    (folder,) = (tmp_path / "cache" / "versions").iterdir()
    other = _with_external_data(seed=7)["weights.bin"]
    with open(folder / "weights.bin", "r+b") as f:  # in place: the same inode, the same size
        f.write(other)
    out = ModelRuntime(registry, settings).get(ModelRef("ext")).run({"input": ROW})["logits"]
    np.testing.assert_allclose(out, expected, rtol=1e-5)  # checked, rebuilt from the store, not reused
    assert (folder / "weights.bin").read_bytes() == _with_external_data(seed=1)["weights.bin"]

    (folder / "weights.bin").unlink()
    (folder / "weights.bin").write_bytes(other)  # a new file under the old name
    os.utime(folder / "weights.bin", ns=(0, 0))
    out = ModelRuntime(registry, settings).get(ModelRef("ext")).run({"input": ROW})["logits"]
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_a_forged_event_claim_never_gets_another_place_signed(tmp_path: Path) -> None:
    # A claim holds the manifest a writer commits (and signs) when it meets the event again; one
    # written by hand under tenant b must not make b's writer sign a version at tenant a's place.
    registry = _signed(tmp_path)
    made = registry.register("a", "iris", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    forged = made.model_copy(update={"version": 7})
    claim = {"event_id": "job-1", "manifest": forged.model_dump(mode="json")}
    registry.store.put(registry.claims.key("models/b/iris/", "job-1"), json.dumps(claim).encode())
    with pytest.raises(IntegrityError, match="the claim of event 'job-1' under b/iris names a/iris version 7"):
        registry.register("b", "iris", {"model.onnx": linear_onnx(seed=2)}, linear_draft(), event_id="job-1")
    assert registry.versions("a", "iris") == [1]


def test_an_unpacked_folder_is_hashed_once_per_process_while_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fermion.model_store import cache

    registry = _signed(tmp_path)
    manifest = registry.register("default", "ext", _with_external_data(seed=1), _draft())
    folder = registry.fetch_all(manifest)  # built from verified cache entries: not hashed again
    hashed: list[Path] = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda path: hashed.append(path) or real(path))
    process = _signed(tmp_path)  # another process: it checks the folder once
    assert process.fetch_all(manifest) == folder and sorted(p.name for p in hashed) == ["model.onnx", "weights.bin"]
    assert process.fetch_all(manifest) == folder and len(hashed) == 2  # then a stat of each file
    os.utime(folder / "weights.bin")  # anything that touches a file: checked again
    assert process.fetch_all(manifest) == folder and len(hashed) == 4
