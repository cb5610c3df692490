"""One training event, one version: the create-only event claim in the registry (model_store/claims.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fermion.model_store import LocalDirStore, PreconditionFailed, Registry
from tests.helpers import linear_draft, linear_onnx


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")


def _register(registry: Registry, seed: int, event_id: str | None = "job-1") -> int:
    return registry.register(
        "default",
        "lin",
        {"model.onnx": linear_onnx(seed=seed), "extra.bin": bytes([seed])},
        linear_draft(),
        event_id=event_id,
    ).version


def test_the_same_event_registered_again_returns_the_first_version(registry: Registry) -> None:
    assert _register(registry, 1) == 1
    assert _register(registry, 2) == 1  # a redelivery trained again: different bytes, same version
    assert _register(registry, 3, "job-2") == 2
    assert registry.versions("default", "lin") == [1, 2]
    assert registry.registered_for("default", "lin", "job-2").version == 2  # type: ignore[union-attr]
    assert registry.registered_for("default", "lin", "job-3") is None


def test_concurrent_writers_of_one_event_make_one_version_and_leave_no_files(registry: Registry) -> None:
    with ThreadPoolExecutor(8) as pool:
        versions = set(pool.map(lambda i: _register(registry, i), range(8)))
    assert len(versions) == 1
    (version,) = versions
    assert registry.versions("default", "lin") == [version]
    assert registry.resolve("default", "lin") == version
    keys = list(registry.store.list("models/default/lin/versions/"))
    losers = [k for k in keys if k.split("/")[4] != str(version)]
    assert all(k.endswith("/model.onnx") for k in losers), f"losers' files left behind: {sorted(losers)}"
    assert len(losers) <= 7  # at most one number held per losing writer


def test_a_writer_that_died_after_its_claim_is_finished_by_the_next(registry: Registry) -> None:
    real_put = registry.store.put

    class Killed(BaseException):
        pass

    def put(key: str, data: bytes, **kw: object) -> str:
        if key.endswith("/manifest.json"):
            raise Killed  # the process dies between its claim and its manifest
        return real_put(key, data, **kw)  # type: ignore[arg-type]

    registry.store.put = put  # type: ignore[method-assign]
    with pytest.raises(Killed):
        _register(registry, 1)
    registry.store.put = real_put  # type: ignore[method-assign]
    assert registry.versions("default", "lin") == []  # nothing is visible yet
    done = registry.registered_for("default", "lin", "job-1")
    assert done is not None and done.version == 1
    assert registry.versions("default", "lin") == [1] and registry.resolve("default", "lin") == 1
    assert _register(registry, 9) == 1
    with pytest.raises(PreconditionFailed):  # the claim itself is create-only
        registry.store.put(registry.claims.key("models/default/lin/", "job-1"), b"{}", if_none_match=True)


def test_registrations_without_an_event_are_unaffected(registry: Registry) -> None:
    assert [_register(registry, i, None) for i in range(3)] == [1, 2, 3]
