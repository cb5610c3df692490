"""A local read-through cache of model files keyed by sha256, safe to share between processes.

Entries are written to a temporary name and renamed into place only after their checksum
matched, so a reader never sees a partial file; a corrupted entry is detected and refetched.
Beside them, `VersionFolders` holds a version's files together under their own names (a model
with external data), checked before each reuse the same way.
Directories are 0700 and entries 0600: the cache holds the models' bytes. `names/` remembers which
entry each object filled, so a reader can tell, before a manifest says, whether a download is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from .backends.local import private_dir
from .errors import IntegrityError
from .manifest import FileEntry

_CHUNK = 1 << 20
STALE_S = 3600.0
"""A temporary file (`.tmp-*`) unwritten for this long belongs to no live download: it is removed."""
_FOLDER_ATTEMPTS = 3

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int]
"""A file's inode, size, mtime and ctime (ns): any write, replacement or utime changes one of them."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hashed(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class FileCache:
    """Verified files under `root/sha256/<digest>`, least recently used evicted past `max_bytes`."""

    def __init__(self, root: Path, *, max_bytes: int = 2 << 30) -> None:
        self.root = root / "sha256"
        self.names = root / "names"
        private_dir(self.root)
        private_dir(self.names)
        self.max_bytes = max_bytes
        self._remove_stale()

    def _remove_stale(self) -> None:
        """Delete temporaries nothing has written to for `STALE_S`: a process died mid-download."""
        cutoff = time.time() - STALE_S
        for p in self.root.glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()

    def holds(self, name: str) -> bool:
        """Whether the entry last filled from `name` (an object's URI) is still here: a hint, not a check."""
        try:
            digest = (self.names / _hashed(name)).read_text()
        except OSError:
            return False
        return len(digest) == 64 and (self.root / digest).exists()

    def get(self, entry: FileEntry, fill: Callable[[Path], None], *, what: str, name: str | None = None) -> Path:
        """The verified local path of `entry`, calling `fill(tmp_path)` to fetch it on a miss.

        `name` (the URI `fill` reads) is remembered for `holds`.
        """
        path = self.root / entry.sha256
        if path.exists():
            if path.stat().st_size == entry.size and sha256_file(path) == entry.sha256:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)  # mtime is our recency: a hit keeps the entry
                self._remember(name, entry.sha256)
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
        self._remember(name, entry.sha256)
        return path

    def _remember(self, name: str | None, digest: str) -> None:
        if name is None:
            return
        hint = self.names / _hashed(name)
        with contextlib.suppress(OSError):
            if hint.read_text() == digest:
                return
        with contextlib.suppress(OSError):  # only a hint: without it, the next cold load downloads early
            hint.write_text(digest)

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


class VersionFolders:
    """Directories `root/<content_sha256>` holding every file of a version under its own name.

    The files are hard links to verified FileCache entries; a folder is staged and renamed into place,
    so it appears whole or not at all. Before a folder is reused, its files are checked against the
    manifest (exactly its names, each a regular file of the right size and sha256); one that differs
    is removed and rebuilt from the store. A folder is hashed at most once per process while the
    stamps (inode, size, mtime, ctime) of its files stay as they were when it last passed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._passed: dict[Path, dict[str, Stamp]] = {}

    def get(
        self, digest: str, files: Mapping[str, FileEntry], fill: Callable[[], Mapping[str, Path]], *, what: str
    ) -> Path:
        """The checked folder for a version whose content digest is `digest`; `fill()` gives verified files."""
        target = self.root / digest
        for _ in range(_FOLDER_ATTEMPTS):
            if os.path.lexists(target):
                if self._intact(target, files):
                    return target
                log.warning("%s: the unpacked folder %s does not match the manifest; rebuilding it", what, target)
                self._discard(target)
            self._build(target, fill())
        raise IntegrityError(f"{what}: its unpacked folder kept failing the manifest's checks; refusing to load it")

    def _intact(self, target: Path, files: Mapping[str, FileEntry]) -> bool:
        stamps = _stamps(target, files)
        if stamps is None:
            return False
        if self._passed.get(target) == stamps:
            return True  # hashed earlier in this process, and nothing has touched the files since
        for name, entry in files.items():
            if stamps[name][1] != entry.size or sha256_file(target / name) != entry.sha256:
                self._passed.pop(target, None)
                return False
        # Stamps from before hashing: a write while we hashed changes ctime, so the next use re-checks.
        self._passed[target] = stamps
        return True

    def _build(self, target: Path, paths: Mapping[str, Path]) -> None:
        private_dir(self.root)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            for name, path in paths.items():
                os.link(path, staging / name)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first: keep theirs, checked before it is used
            shutil.rmtree(staging, ignore_errors=True)
            return
        # Made from entries the FileCache verified a moment ago: no need to hash them again.
        if (stamps := _stamps(target, paths)) is not None:
            self._passed[target] = stamps

    def _discard(self, target: Path) -> None:
        # Renamed away first, so no other process sees a folder half removed; whoever wins removes it.
        self._passed.pop(target, None)
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        try:
            os.rename(target, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)


def _stamps(folder: Path, names: Mapping[str, object]) -> dict[str, Stamp] | None:
    """Each file's stamp, or None unless the folder holds exactly `names`, each a regular file."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode) or set(os.listdir(folder)) != set(names):
            return None
        stamps = {}
        for name in names:
            st = os.lstat(folder / name)
            if not stat.S_ISREG(st.st_mode):
                return None
            stamps[name] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        return None
    return stamps
