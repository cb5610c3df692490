"""A cold load's store reads overlap: the model file downloads beside its manifest and signature.

The store is a real local directory whose every read first waits `DELAY`, as a remote store's round
trip does, and which logs when each read began and ended (bench/first_request.py measures the same
on LocalStack's S3 API).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import pytest

from fermion.functions.inference.errors import BadRequest
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import (
    IntegrityError,
    LocalDirStore,
    ObjectNotFound,
    Registry,
    Signer,
    StoreUnavailable,
    VersionNotFound,
    generate_key_pair,
)
from fermion.model_store.cache import STALE_S, FileCache
from fermion.model_store.signing import SignatureError, Verifier
from tests.helpers import linear_draft, linear_onnx, wait_until

DELAY = 0.15
T = TypeVar("T")


class SlowStore(LocalDirStore):
    """A local store whose reads each take `DELAY` more, logged as (what, object name, start, end) as they end.

    It is remote as far as the reader can tell (a local directory's reads are not overlapped).
    """

    remote = True

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, str, float, float]] = []
        self.begun: list[tuple[str, str]] = []  # as each read starts (one in a thread may end after its caller)
        self.failing: dict[str, Exception] = {}  # object name -> what its next read raises

    def _slow(self, what: str, key: str, call: Callable[[], T]) -> T:
        started = time.monotonic()
        self.begun.append((what, key.rsplit("/", 1)[-1]))
        time.sleep(DELAY)
        try:
            return call()
        finally:
            self.reads.append((what, key.rsplit("/", 1)[-1], started, time.monotonic()))

    def get(self, key: str) -> tuple[bytes, str]:
        return self._slow("get", key, lambda: self._fail(key) or LocalDirStore.get(self, key))

    def download(self, key: str, dest: Path) -> None:
        self._slow("download", key, lambda: self._fail(key) or LocalDirStore.download(self, key, dest))

    def _fail(self, key: str) -> None:
        """Raise what `failing` holds for this object's name, once."""
        if (exc := self.failing.pop(key.rsplit("/", 1)[-1], None)) is not None:
            raise exc

    def begun_count(self, what: str, name: str) -> int:
        return self.begun.count((what, name))

    def read(self, what: str, name: str) -> tuple[float, float]:
        """When the one read of `name` by `what` began and ended."""
        (interval,) = [(s, e) for w, n, s, e in self.reads if (w, n) == (what, name)]
        return interval


@pytest.fixture
def store(tmp_path: Path) -> SlowStore:
    private, public = generate_key_pair(tmp_path / "keys")
    writer = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "writer-cache", signer=Signer.from_file(private))
    writer.register("default", "lin", {"model.onnx": linear_onnx()}, linear_draft())
    (tmp_path / "public").write_text(public.read_text())
    return SlowStore(tmp_path / "store")


def runtime(store: SlowStore, tmp_path: Path, cache: str = "cache", **settings: object) -> ModelRuntime:
    """A fresh inference runtime over `store`, verifying signatures, its file cache under `cache`."""
    verifier = Verifier.from_texts([(tmp_path / "public").read_text().strip()])
    registry = Registry(store, tmp_path / cache, verifier=verifier)
    return ModelRuntime(registry, InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], **settings))


def leftovers(tmp_path: Path, cache: str = "cache") -> list[str]:
    """Temporary files left in the cache (an early download nobody claimed must not stay)."""
    return sorted(p.name for p in (tmp_path / cache / "sha256").iterdir() if p.name.startswith(".tmp-"))


def test_the_model_file_downloads_beside_the_manifest_and_its_signature(store: SlowStore, tmp_path: Path) -> None:
    model = runtime(store, tmp_path).get(ModelRef("lin", version=1))

    manifest = store.read("get", "manifest.json")
    signature = store.read("get", "signature.json")
    file = store.read("download", "model.onnx")
    assert signature[0] < manifest[1] and file[0] < manifest[1], store.reads  # all three in flight at once
    assert model.version == 1 and model.run({"input": np.ones((2, 4), np.float32)})["logits"].shape == (2, 3)
    assert leftovers(tmp_path) == []


def test_without_early_fetch_the_file_waits_for_the_manifest(store: SlowStore, tmp_path: Path) -> None:
    runtime(store, tmp_path, early_fetch=False).get(ModelRef("lin", version=1))

    assert store.read("download", "model.onnx")[0] >= store.read("get", "manifest.json")[1], store.reads
    assert store.read("get", "signature.json")[0] < store.read("get", "manifest.json")[1]  # that overlap stays


def test_a_local_directory_store_is_read_in_turn(tmp_path: Path, store: SlowStore) -> None:
    class Local(SlowStore):
        remote = False  # as LocalDirStore: a read is a file read, with no round trip to overlap

    local = Local(tmp_path / "store")
    runtime(local, tmp_path).get(ModelRef("lin", version=1))

    manifest_read = local.read("get", "manifest.json")
    assert local.read("get", "signature.json")[0] >= manifest_read[1], local.reads
    assert local.read("download", "model.onnx")[0] >= manifest_read[1], local.reads


def test_a_file_already_in_the_cache_is_not_downloaded_again(store: SlowStore, tmp_path: Path) -> None:
    runtime(store, tmp_path).get(ModelRef("lin", version=1))
    store.begun.clear()

    runtime(store, tmp_path).get(ModelRef("lin", version=1))  # a restarted process on the same disk cache

    assert ("download", "model.onnx") not in store.begun and ("get", "manifest.json") in store.begun


def test_an_early_download_is_checked_against_the_manifest_like_any_other(store: SlowStore, tmp_path: Path) -> None:
    # Bytes swapped under a signed manifest: fetched early, they are refused all the same, and not cached.
    (tmp_path / "store" / "models/default/lin/versions/1/model.onnx").write_bytes(linear_onnx(seed=1))

    with pytest.raises(IntegrityError, match="expected sha256"):
        runtime(store, tmp_path).get(ModelRef("lin", version=1))

    assert store.begun_count("download", "model.onnx") == 1  # the early download was the one refused
    assert store.read("download", "model.onnx")[0] < store.read("get", "manifest.json")[1]
    assert [p.name for p in (tmp_path / "cache" / "sha256").iterdir()] == []


def test_a_failed_load_is_retried_without_another_early_download(store: SlowStore, tmp_path: Path) -> None:
    # An unsigned version: every load is refused, and retries must not each start a download.
    (tmp_path / "store" / "models/default/lin/versions/1/signature.json").unlink()
    models = runtime(store, tmp_path)
    for _ in range(3):
        with pytest.raises(SignatureError):
            models.get(ModelRef("lin", version=1))

    assert store.begun_count("download", "model.onnx") == 1
    wait_until(lambda: leftovers(tmp_path) == [], 5, "the unclaimed early download deleted")


def test_an_early_download_that_failed_is_made_again_once_the_manifest_is_read(
    store: SlowStore, tmp_path: Path
) -> None:
    store.failing["model.onnx"] = StoreUnavailable("cannot reach the object store: connection reset")

    model = runtime(store, tmp_path).get(ModelRef("lin", version=1))

    assert model.version == 1 and store.begun_count("download", "model.onnx") == 2


def test_a_signature_read_before_it_was_written_is_read_again(store: SlowStore, tmp_path: Path) -> None:
    # The writer puts the signature before the manifest; read beside it, it may have gone out first.
    store.failing["signature.json"] = ObjectNotFound("models/default/lin/versions/1/signature.json")

    assert runtime(store, tmp_path).get(ModelRef("lin", version=1)).version == 1
    assert store.begun_count("get", "signature.json") == 2


def test_a_model_with_external_data_downloads_each_file_once(store: SlowStore, tmp_path: Path) -> None:
    model = onnx.load_from_string(linear_onnx())
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    files = {"model.onnx": (tmp_path / "ext.onnx").read_bytes(), "w.bin": (tmp_path / "w.bin").read_bytes()}
    writer = Registry(
        LocalDirStore(tmp_path / "store"), tmp_path / "w", signer=Signer.from_file(tmp_path / "keys/signing.key")
    )
    writer.register("default", "ext", files, linear_draft())

    runtime(store, tmp_path).get(ModelRef("ext", version=1))

    assert store.begun_count("download", "model.onnx") == 1 and store.begun_count("download", "w.bin") == 1


def test_temporaries_a_dead_process_left_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "cache" / "sha256"
    root.mkdir(parents=True)
    (root / ".tmp-early-dead").write_bytes(b"half a model")
    os.utime(root / ".tmp-early-dead", (time.time() - STALE_S - 60,) * 2)
    (root / ".tmp-early-live").write_bytes(b"a download under way")

    FileCache(tmp_path / "cache")

    assert sorted(p.name for p in root.iterdir()) == [".tmp-early-live"]


def test_a_guess_the_manifest_does_not_bear_out_is_dropped(store: SlowStore, tmp_path: Path) -> None:
    # On CPU with cpu_variant int8 the guess is model.int8.onnx; this version has only fp32, which serves.
    model = runtime(store, tmp_path, cpu_variant="int8").get(ModelRef("lin", version=1))
    assert model.variant == "fp32"
    # Asked for a variant the version lacks: refused by name, the early download of it dropped.
    with pytest.raises(BadRequest, match="no 'fp16' variant"):
        runtime(store, tmp_path, "other-cache", variant="fp16").get(ModelRef("lin", version=1))
    # A version that does not exist: its early download fails beside the manifest's read, which says so.
    with pytest.raises(VersionNotFound):
        runtime(store, tmp_path).get(ModelRef("lin", version=9))

    # A dropped download is deleted once it ends.
    wait_until(lambda: leftovers(tmp_path) == [] and leftovers(tmp_path, "other-cache") == [], 5, "none left")
