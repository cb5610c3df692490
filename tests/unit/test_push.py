"""Bring your own ONNX: ingest's push route validates, refuses with a reason, registers and serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from fermion.compile import InvalidModel, validate_onnx
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.model_store import KeyStore, Lineage, LocalDirStore, Registry, StoreSettings, open_registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


def _with_external_data(directory: Path, location: str = "weights.bin") -> Path:
    model = onnx.load_from_string(linear_onnx(n_in=64, n_out=8))
    path = directory / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    if location != "weights.bin":  # rewrite the reference, as a hostile or careless file would
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(proto, str(path))
    return path


def _push(home: Path, name: str, file: Path) -> httpx.Response:
    """`fermion models push`'s request, to the ingest function in process (the CLI's own run is in e2e)."""
    registry = open_registry(StoreSettings(home=home))
    app = create_app(lambda: IngestSettings(home=home))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    beside = [q for q in file.parent.iterdir() if q.suffix == ".bin" and q.is_file()]
    files = [("model", (file.name, file.read_bytes())), *(("data", (q.name, q.read_bytes())) for q in beside)]
    with TestClient(app) as client:
        return client.post(f"/v1/models/{name}/versions", files=files, headers=bearer(api_key(registry, "upload")))


def test_push_registers_a_valid_model_that_then_serves(tmp_path: Path) -> None:
    (tmp_path / "lin.onnx").write_bytes(linear_onnx())
    out = _push(tmp_path / "home", "lin", tmp_path / "lin.onnx")
    assert out.status_code == 201, out.text
    assert out.json()["version"] == 1
    registry = Registry(LocalDirStore(tmp_path / "home" / "store"), tmp_path / "cache")
    manifest = registry.manifest("default", "lin", 1)
    assert [(t.name, t.datatype, t.shape) for t in manifest.signature.inputs] == [("input", "FP32", [-1, 4])]


def test_a_model_with_external_data_beside_it_is_accepted_and_served(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    model = validate_onnx(_with_external_data(tmp_path / "m"))
    assert sorted(model.files) == ["model.onnx", "weights.bin"]
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    from fermion.model_store import Draft, Signature, TensorSpec

    sig = Signature(
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 8])],
    )
    registry.register("default", "ext", model.files, Draft(signature=sig))
    runtime = ModelRuntime(registry, InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"]))
    out = runtime.get(ModelRef("ext")).run({"input": np.ones((2, 64), np.float32)})
    assert out["logits"].shape == (2, 8)


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../weights.bin", "leaves the model's directory"),
        ("/etc/passwd", "is absolute"),
        ("sub/weights.bin", "leaves the model's directory"),
        ("missing.bin", "is missing"),
    ],
)
def test_hostile_external_data_references_are_refused(tmp_path: Path, location: str, reason: str) -> None:
    path = _with_external_data(tmp_path, location)
    with pytest.raises(InvalidModel, match=reason):
        validate_onnx(path)
    out = _push(tmp_path / "home", "evil", path)
    assert out.status_code == 400 and reason in out.json()["error"] and "refused" in out.json()["error"]
    assert not (tmp_path / "home" / "store" / "models").exists()  # nothing was written


def test_symlinks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "real.onnx").write_bytes(linear_onnx())
    (tmp_path / "link.onnx").symlink_to(tmp_path / "real.onnx")
    with pytest.raises(InvalidModel, match="symbolic link"):
        validate_onnx(tmp_path / "link.onnx")
    (tmp_path / "m").mkdir()
    path = _with_external_data(tmp_path / "m")
    (tmp_path / "m" / "weights.bin").rename(tmp_path / "elsewhere.bin")
    (tmp_path / "m" / "weights.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(InvalidModel, match=r"external data file 'weights\.bin' is a symbolic link"):
        validate_onnx(path)


def test_files_that_are_not_models_or_too_big_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(InvalidModel, match=r"not an ONNX model|checker"):
        validate_onnx(tmp_path / "junk.onnx")
    (tmp_path / "lin.onnx").write_bytes(linear_onnx())
    with pytest.raises(InvalidModel, match="the limit is 100"):
        validate_onnx(tmp_path / "lin.onnx", max_bytes=100)


@pytest.mark.parametrize("keep", [-4, 0])  # four bytes short; empty
def test_truncated_external_data_is_refused_before_it_is_registered(tmp_path: Path, keep: int) -> None:
    path = _with_external_data(tmp_path)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:keep])
    with pytest.raises(InvalidModel, match="the file is truncated or the offset is wrong"):
        validate_onnx(path)


def test_an_external_length_that_disagrees_with_the_tensor_is_refused(tmp_path: Path) -> None:
    path = _with_external_data(tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    (entry,) = [e for e in proto.graph.initializer[0].external_data if e.key == "length"]
    entry.value = str(int(entry.value) - 4)
    onnx.save(proto, str(path))
    with pytest.raises(InvalidModel, match="but its external data entry says"):
        validate_onnx(path)
    ok = tmp_path / "ok"
    ok.mkdir()
    assert set(validate_onnx(_with_external_data(ok)).files) == {"model.onnx", "weights.bin"}


def _push_parts(home: Path, name: str, parts: list[tuple[str, str, bytes]]) -> httpx.Response:
    """A push with the multipart parts given as (field, file name, bytes), as a hand-made request would send."""
    registry = open_registry(StoreSettings(home=home))
    app = create_app(lambda: IngestSettings(home=home))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    files = [(field, (filename, data)) for field, filename, data in parts]
    with TestClient(app) as client:
        return client.post(f"/v1/models/{name}/versions", files=files, headers=bearer(api_key(registry, "upload")))


@pytest.mark.parametrize(
    "reserved", ["model.onnx", "manifest.json", "signature.json", "model.int8.onnx", "model.fp16.onnx"]
)
def test_a_data_part_with_a_name_the_registry_writes_is_refused_before_anything_is_stored(
    tmp_path: Path, reserved: str
) -> None:
    # Issue 25: a part named model.onnx replaced the model; one named signature.json burnt a version number.
    home = tmp_path / "home"
    out = _push_parts(home, "m", [("model", "m.onnx", linear_onnx()), ("data", reserved, linear_onnx(seed=1))])
    assert out.status_code == 400, out.text
    assert repr(reserved) in out.json()["error"] and "reserved" in out.json()["error"]
    assert not list((home / "store").rglob("models/*")), "nothing of the refused push was written"
    out = _push_parts(home, "m", [("model", "m.onnx", linear_onnx())])
    assert out.status_code == 201 and out.json()["version"] == 1, out.text  # no number was burnt


def test_the_registry_names_are_all_reserved() -> None:
    from fermion.compile.validate import RESERVED_NAMES
    from fermion.compile.variants import VARIANT_FILES
    from fermion.model_store import MODEL_FILE
    from fermion.model_store.manifest import MANIFEST
    from fermion.model_store.signing import SIGNATURE_FILE

    assert {MODEL_FILE, MANIFEST, SIGNATURE_FILE, *VARIANT_FILES.values()} <= RESERVED_NAMES


def _custom_op_model() -> bytes:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Exfiltrate", ["input"], ["logits"], domain="com.evil")],
        "custom",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 4])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 4])],
    )
    opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("com.evil", 1)]
    model = onnx.helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9  # one ONNX Runtime reads: the op is the only thing wrong
    return model.SerializeToString()


def test_a_graph_onnx_runtime_cannot_load_is_refused_at_push_naming_the_op(tmp_path: Path) -> None:
    # Issue 25: a custom op domain was registered, then failed at load with a 503 showing a cache path.
    (tmp_path / "custom.onnx").write_bytes(_custom_op_model())
    with pytest.raises(InvalidModel, match=r"Exfiltrate.*com\.evil|com\.evil.*Exfiltrate"):
        validate_onnx(tmp_path / "custom.onnx")
    home = tmp_path / "home"
    out = _push_parts(home, "custom", [("model", "custom.onnx", _custom_op_model())])
    assert out.status_code == 400, out.text
    error = out.json()["error"]
    assert "com.evil" in error and "Exfiltrate" in error, error
    assert "/" not in error.replace("onnxruntime.ai/", ""), f"an internal path in {error!r}"
    assert not list((home / "store").rglob("models/*"))
    future = onnx.load_from_string(linear_onnx())
    future.ir_version = 14  # onnx.checker passes what this ONNX Runtime (IR 13 at most) cannot read
    out = _push_parts(home, "future", [("model", "future.onnx", future.SerializeToString())])
    assert out.status_code == 400 and "IR version" in out.json()["error"], out.text
    assert "/" not in out.json()["error"] and ".cc" not in out.json()["error"], out.text


def test_push_answers_and_refusals_carry_no_internal_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok = _push_parts(home, "lin", [("model", "lin.onnx", linear_onnx())])
    bad = _push_parts(home, "lin", [("model", "lin.onnx", b"\x00junk")])
    assert ok.status_code == 201 and bad.status_code == 400
    for answer in (ok.text, bad.text):
        assert str(tmp_path) not in answer and "fermion-push-" not in answer and "/tmp" not in answer, answer


def test_a_versions_lineage_names_its_dataset_by_store_key_never_by_local_path(tmp_path: Path) -> None:
    """Issue 25: no internal paths in answers; the manifest keeps the full URI, the answer shows the key."""
    registry = open_registry(StoreSettings(home=tmp_path))
    uri = (tmp_path / "store" / "datasets" / "default" / "iris" / f"{'a' * 64}.csv").as_uri()
    lineage = Lineage(dataset_uri=uri, dataset_sha256="a" * 64)
    registry.register("default", "iris", {"model.onnx": linear_onnx()}, linear_draft(lineage=lineage))
    app = create_app(lambda: IngestSettings(home=tmp_path))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    with TestClient(app) as client:
        r = client.get("/v1/models/iris/versions/1", headers=bearer(api_key(registry, "read")))
    assert r.status_code == 200, r.text
    assert r.json()["lineage"]["dataset_uri"] == f"datasets/default/iris/{'a' * 64}.csv"
    assert str(tmp_path) not in r.text
    assert registry.manifest("default", "iris", 1).lineage.dataset_uri == uri  # the record itself is unchanged
