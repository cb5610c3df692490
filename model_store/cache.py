"""A local read-through cache of model files keyed by sha256, safe to share between processes.

Entries are written to a temporary name and renamed into place only after their checksum
matched, so a reader never sees a partial file; a corrupted entry is detected and refetched.
Directories are 0700 and entries 0600: the cache holds the models' bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .backends.local import private_dir
from .errors import IntegrityError
from .manifest import FileEntry

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FileCache:
    """Verified files under `root/sha256/<digest>`, least recently used evicted past `max_bytes`."""

    def __init__(self, root: Path, *, max_bytes: int = 2 << 30) -> None:
        self.root = root / "sha256"
        private_dir(self.root)
        self.max_bytes = max_bytes

    def get(self, entry: FileEntry, fill: Callable[[Path], None], *, what: str) -> Path:
        """The verified local path of `entry`, calling `fill(tmp_path)` to fetch it on a miss."""
        path = self.root / entry.sha256
        if path.exists():
            if path.stat().st_size == entry.size and sha256_file(path) == entry.sha256:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)  # mtime is our recency: a hit keeps the entry
                return path
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fill(tmp)
            size, digest = tmp.stat().st_size, sha256_file(tmp)
            if size != entry.size or digest != entry.sha256:
                raise IntegrityError(
                    f"{what}: expected sha256 {entry.sha256} ({entry.size} bytes), "
                    f"got {digest} ({size} bytes); refusing to load it"
                )
            tmp.chmod(0o600)  # `fill` may have replaced the file (a download renames its own into place)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        entries = []
        for p in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if not p.name.startswith(".tmp-"):
                    st = p.stat()
                    entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            if p != keep:  # another process may hold it open; unlinking is still safe on POSIX
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                total -= size
