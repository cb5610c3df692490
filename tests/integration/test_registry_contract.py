"""The registry contract, on a local directory and on S3 (LocalStack): immutable versions, manifests
last, atomic aliases, verified reads. The one suite parametrised over both backends."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fermion.infra.localstack import LocalStack
from fermion.model_store import (
    AliasConflict,
    AliasNotFound,
    IntegrityError,
    InvalidName,
    Lineage,
    LocalDirStore,
    ModelNotFound,
    PreconditionFailed,
    Registry,
    StoreNotConformant,
    StoreUnavailable,
    VersionNotFound,
)
from fermion.model_store.backends.s3 import S3Store
from tests.helpers import free_port, linear_draft, linear_onnx, s3_client

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """The same registry contract over a local directory and over S3 (LocalStack)."""
    if request.param == "local":
        return Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    return Registry(request.getfixturevalue("s3_store"), tmp_path / "cache")


def test_versions_are_consecutive_immutable_and_latest_follows(registry: Registry) -> None:
    lineage = Lineage(training_event_id="evt-1", dataset_sha256="b" * 64, recipe={"architecture": "mlp"})
    m1 = registry.register("default", "iris", {"model.onnx": linear_onnx(seed=1)}, linear_draft(lineage=lineage))
    m2 = registry.register("default", "iris", {"model.onnx": linear_onnx(seed=2)}, linear_draft())
    assert (m1.version, m2.version) == (1, 2)
    assert registry.versions("default", "iris") == [1, 2]
    assert registry.resolve("default", "iris") == 2
    stored = registry.manifest("default", "iris", 1)
    assert stored.lineage.training_event_id == "evt-1"
    assert stored.files["model.onnx"].size == len(linear_onnx(seed=1))
    assert stored.content_sha256 == m1.content_sha256 != m2.content_sha256
    with pytest.raises(PreconditionFailed):
        registry.store.put("models/default/iris/versions/1/manifest.json", b"{}", if_none_match=True)


def test_a_version_without_its_manifest_is_invisible_and_skipped(registry: Registry) -> None:
    # A writer that died after its model file but before its manifest.
    registry.store.put("models/default/m/versions/1/model.onnx", b"partial", if_none_match=True)
    assert registry.versions("default", "m") == []
    with pytest.raises(VersionNotFound):
        registry.manifest("default", "m", 1)
    assert registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft()).version == 2


def test_concurrent_registrations_get_distinct_consecutive_versions(registry: Registry) -> None:
    def register(i: int) -> int:
        return registry.register("default", "race", {"model.onnx": linear_onnx(seed=i)}, linear_draft()).version

    with ThreadPoolExecutor(16) as pool:
        versions = sorted(pool.map(register, range(16)))
    assert versions == list(range(1, 17))
    assert registry.resolve("default", "race") == 16
    seeds = {registry.manifest("default", "race", v).files["model.onnx"].sha256 for v in versions}
    assert len(seeds) == 16  # nothing was overwritten


def _register_in_process(root: str, i: int) -> int:
    reg = Registry(LocalDirStore(Path(root) / "store"), Path(root) / f"cache{i}")
    return reg.register("default", "proc", {"model.onnx": linear_onnx(seed=i)}, linear_draft()).version


def test_concurrent_registrations_from_separate_processes(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = sorted(pool.starmap(_register_in_process, [(str(tmp_path), i) for i in range(8)]))
    assert versions == list(range(1, 9))


def test_alias_compare_and_swap_loses_no_update(registry: Registry) -> None:
    for i in range(4):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())

    targets = [1, 2, 3, 4] * 4

    with ThreadPoolExecutor(8) as pool:
        previous = list(pool.map(lambda v: registry.set_alias("default", "m", "staging", v), targets))
    alias = registry.alias("default", "m", "staging")
    # Every swap saw exactly what the swap before it wrote: the history is an unbroken chain.
    writes = [(p, t) for p, t in zip(previous, targets, strict=True) if p != t]
    assert sorted(alias.history) == sorted(p for p, _ in writes if p is not None)
    assert len(alias.history) == len(writes) - 1


def test_latest_never_moves_backwards(registry: Registry) -> None:
    for i in range(3):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())
    registry._advance_latest("default", "m", 2)  # a slow writer of an older version finishing late
    assert registry.resolve("default", "m", "latest") == 3


def test_fetch_verifies_checksums_before_handing_out_a_file(registry: Registry) -> None:
    manifest = registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft())
    path = registry.fetch(manifest)
    assert path.read_bytes() == linear_onnx()

    # Tamper with the stored object and clear the cache: the fetch must refuse it.
    registry.store.put("models/default/m/versions/1/model.onnx", linear_onnx(seed=9))
    path.unlink()
    with pytest.raises(IntegrityError, match="expected sha256"):
        registry.fetch(manifest)
    assert not any(registry.cache.root.iterdir()), "a refused file must not stay in the cache"


def test_a_corrupted_cache_entry_is_refetched(registry: Registry) -> None:
    manifest = registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft())
    path = registry.fetch(manifest)
    path.write_bytes(b"garbage")
    assert registry.fetch(manifest).read_bytes() == linear_onnx()


def test_a_missing_file_is_an_integrity_error(registry: Registry) -> None:
    manifest = registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft())
    registry.store.delete("models/default/m/versions/1/model.onnx")
    with pytest.raises(IntegrityError, match="missing"):
        registry.fetch(manifest)


def test_lookups_name_what_is_missing(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="nope"):
        registry.resolve("default", "nope")
    registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft())
    with pytest.raises(AliasNotFound, match="staging"):
        registry.resolve("default", "m", "staging")
    with pytest.raises(VersionNotFound, match="version 7"):
        registry.manifest("default", "m", 7)
    with pytest.raises(VersionNotFound):
        registry.set_alias("default", "m", "staging", 7)


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "A", "", "x" * 64, "a..b"])
def test_names_cannot_escape_their_prefix(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidName):
        registry.register("default", name, {"model.onnx": linear_onnx()}, linear_draft())


def test_two_promoters_racing_end_with_one_winner_and_one_clear_conflict(registry: Registry) -> None:
    for i in range(3):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())
    registry.set_alias("default", "m", "production", 1)
    # Both read "production → 1", then both try to move it.
    assert registry.set_alias("default", "m", "production", 2, expected=1) == 1
    with pytest.raises(AliasConflict, match="points to version 2, not 1"):
        registry.set_alias("default", "m", "production", 3, expected=1)
    assert registry.resolve("default", "m", "production") == 2


def test_rollback_and_delete_an_alias(registry: Registry) -> None:
    for i in range(3):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())
    for v in (1, 3, 2):
        registry.set_alias("default", "m", "production", v)
    assert registry.rollback("default", "m", "production") == (2, 3)
    assert registry.rollback("default", "m", "production") == (3, 1)
    with pytest.raises(AliasConflict, match="no earlier version"):
        registry.rollback("default", "m", "production")
    registry.delete_alias("default", "m", "production")
    with pytest.raises(AliasNotFound):
        registry.resolve("default", "m", "production")
    with pytest.raises(InvalidName, match="latest"):
        registry.delete_alias("default", "m", "latest")


def test_references_by_name_version_and_alias(registry: Registry) -> None:
    for i in range(2):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())
    registry.set_alias("default", "m", "staging", 1)
    assert registry.lookup("default", "m").version == 2
    assert registry.lookup("default", "m:1").version == 1
    assert registry.lookup("default", "m@staging").version == 1
    with pytest.raises(InvalidName):
        registry.lookup("default", "m@staging:1")


class _IgnoresConditions:
    """A store that accepts conditional writes and ignores the conditions (some S3 look-alikes do)."""

    def __init__(self, inner: LocalDirStore) -> None:
        self.inner, self.url = inner, inner.url

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        return self.inner.put(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_store_that_ignores_conditional_writes_is_refused(tmp_path: Path) -> None:
    registry = Registry(_IgnoresConditions(LocalDirStore(tmp_path / "s")), tmp_path / "c")  # type: ignore[arg-type]
    with pytest.raises(StoreNotConformant, match="ignores If-None-Match"):
        registry.register("default", "m", {"model.onnx": linear_onnx()}, linear_draft())
    assert list(registry.store.list("models/")) == []  # nothing was written


def test_s3_faults_are_named_errors(localstack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable = S3Store("b", client=s3_client(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StoreUnavailable, match="unreachable"):
        unreachable.get("k")
    missing_bucket = S3Store("no-such-bucket", client=s3_client(localstack.endpoint_url))
    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        missing_bucket.put("k", b"x")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_credentials = S3Store("b", endpoint_url=localstack.endpoint_url, region="us-east-1")
    with pytest.raises(StoreUnavailable, match="no AWS credentials"):
        no_credentials.get("k")
    no_credentials.close()


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    registry = Registry(LocalDirStore(tmp_path / "s"), tmp_path / "c", cache_max_bytes=2 * len(linear_onnx()) + 10)
    manifests = [
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft()) for i in range(4)
    ]
    for m in manifests:
        registry.fetch(m)
    cached = list(registry.cache.root.iterdir())
    assert len(cached) == 2
    assert registry.fetch(manifests[0]).read_bytes() == linear_onnx(seed=0)  # evicted entries are refetched
