"""A directory as an object store: the embedded default, with the same atomicity as S3.

Create-only writes use `link()` of a finished temporary file, which fails if the target exists;
compare-and-swap takes a per-key `flock` so concurrent processes serialise on one alias. What it
creates is its user's alone: directories 0700, files 0600 (models, datasets and keys live here).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidName, ObjectNotFound, PreconditionFailed, StoreError, StoreFull, StoreUnavailable

_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

_LOCKS = ".locks"


def private_dir(path: Path) -> None:
    """Create `path` and its missing parents 0700 (`mkdir -p` would make the parents 0777 less umask)."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)


def _etag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class LocalDirStore:
    """Objects as files under `root`."""

    remote = False  # a read is a file read: nothing to gain from overlapping reads

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()
        try:
            private_dir(self.root)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create store directory {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise InvalidName(f"invalid object key {key!r}")
        return self.root.joinpath(*parts)

    def get(self, key: str) -> tuple[bytes, str]:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        return data, _etag(data)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        path = self._path(key)
        try:
            private_dir(path.parent)
            tmp = self._write_temp(path.parent, data)
        except OSError as exc:
            raise _failed(exc, key) from exc
        try:
            if if_none_match:
                try:
                    os.link(tmp, path)
                except FileExistsError as exc:
                    raise PreconditionFailed(f"{key} already exists") from exc
            elif if_match is not None:
                with self._lock(key):
                    try:
                        current = _etag(path.read_bytes())
                    except FileNotFoundError as exc:
                        raise PreconditionFailed(f"{key} no longer exists") from exc
                    if current != if_match:
                        raise PreconditionFailed(f"{key} changed (etag {current} != {if_match})")
                    os.replace(tmp, path)
            else:
                os.replace(tmp, path)
        except OSError as exc:
            raise _failed(exc, key) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return _etag(data)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def download(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        start = base if base.is_dir() else base.parent
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if d != _LOCKS]
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def children(self, prefix: str) -> builtins.list[str]:  # `list` is a method here
        try:
            entries = os.listdir(self._path(prefix.rstrip("/")))
        except (FileNotFoundError, NotADirectoryError, InvalidName):
            return []
        return sorted(e for e in entries if not e.startswith(".tmp-") and e != _LOCKS)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    @staticmethod
    def _write_temp(directory: Path, data: bytes) -> str:
        """A finished, synced temporary file beside the target; removed again if it cannot be finished."""
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        lock_dir = self.root / _LOCKS
        private_dir(lock_dir)
        name = hashlib.sha256(key.encode()).hexdigest()
        with os.fdopen(os.open(lock_dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _failed(exc: OSError, key: str) -> StoreError:
    """An OSError from a write as the registry's error: no room, or the directory unusable."""
    if exc.errno in _NO_ROOM:
        return StoreFull(f"no room to write {key}: {exc.strerror} (the store's disk or quota is full)")
    return StoreUnavailable(f"cannot write {key}: {exc}")
