"""The local store and the model cache keep what they write to their user, whatever the umask (issue 25)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from fermion.model_store import LocalDirStore
from fermion.model_store.cache import FileCache
from fermion.model_store.manifest import file_entry


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The common default umask (022), under which plain mkdir and open make 0755 and 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def _modes(root: Path) -> set[str]:
    return {f"{stat.S_IMODE(p.stat().st_mode):o} {'dir' if p.is_dir() else 'file'}" for p in [root, *root.rglob("*")]}


def test_the_local_store_writes_private_directories_and_files(tmp_path: Path, open_umask: None) -> None:
    store = LocalDirStore(tmp_path / "home" / "store")
    store.put("models/t/m/versions/1/model.onnx", b"weights", if_none_match=True)
    store.put("models/t/m/aliases/latest.json", b"{}")
    store.put("models/t/m/aliases/latest.json", b"{ }", if_match=store.get("models/t/m/aliases/latest.json")[1])
    assert _modes(tmp_path / "home") == {"700 dir", "600 file"}


def test_the_cache_writes_private_directories_and_entries(tmp_path: Path, open_umask: None) -> None:
    cache = FileCache(tmp_path / "home" / "cache")
    data = b"model bytes"
    cache.get(file_entry(data), lambda p: p.write_bytes(data), what="model.onnx")

    def replaced(p: Path) -> None:  # a download that renames its own file into place, as boto3 does
        (p.parent / "other").write_bytes(data + b"!")
        os.replace(p.parent / "other", p)

    cache.get(file_entry(data + b"!"), replaced, what="model.onnx")
    assert _modes(tmp_path / "home") == {"700 dir", "600 file"}
