"""Datasets in the object store: `datasets/{tenant}/{name}/{sha256}.{ext}`, content-addressed."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .backends import ObjectStore
from .cache import sha256_file
from .errors import IntegrityError, NotFound, ObjectNotFound, PreconditionFailed
from .names import check_name

DatasetFormat = Literal["npz", "csv", "zip", "tar"]
FORMATS: tuple[DatasetFormat, ...] = ("npz", "csv", "zip", "tar")
"""npz (arrays x, y), csv (a header and a label column), zip or tar (pictures: fermion.imaging)."""


def dataset_format(ext: str) -> DatasetFormat | None:
    """The format a file extension names (any case, with or without the dot), or None."""
    ext = ext.lower().removeprefix(".")
    return next((f for f in FORMATS if f == ext), None)


class DatasetNotFound(NotFound):
    """No stored dataset matches."""


class AmbiguousDataset(NotFound):
    """Several uploads share the name; a sha256 must choose."""


@dataclass(frozen=True)
class StoredDataset:
    """Where a dataset was stored, and what it is."""

    key: str
    uri: str
    sha256: str
    size: int
    format: DatasetFormat


def dataset_key(tenant: str, name: str, sha256: str, fmt: DatasetFormat) -> str:
    """The object key of a dataset."""
    if fmt not in FORMATS:
        raise ValueError(f"unsupported dataset format {fmt!r}: use one of {', '.join(FORMATS)}")
    return f"datasets/{check_name('tenant', tenant)}/{check_name('dataset', name)}/{sha256}.{fmt}"


class DatasetStore:
    """Put and fetch datasets by content; the same bytes uploaded twice are stored once."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def put(self, tenant: str, name: str, data: bytes, fmt: DatasetFormat) -> StoredDataset:
        """Store `data` create-only under its sha256 (already there is success: same bytes)."""
        sha = hashlib.sha256(data).hexdigest()
        key = dataset_key(tenant, name, sha, fmt)
        with contextlib.suppress(PreconditionFailed):
            self.store.put(key, data, if_none_match=True)
        return StoredDataset(key, self._uri(key), sha, len(data), fmt)

    def find(self, tenant: str, name: str, sha256: str | None = None) -> StoredDataset:
        """A stored dataset by name (and sha256 when the name has several uploads)."""
        prefix = f"datasets/{check_name('tenant', tenant)}/{check_name('dataset', name)}/"
        stored = [f for f in self.store.children(prefix) if "." in f]
        candidates = [f for f in stored if f.split(".")[0] == sha256] if sha256 else stored
        if not candidates:
            what = f"dataset {name!r}" + (f" with sha256 {sha256}" if sha256 else "")
            raise DatasetNotFound(f"{what} is not stored for tenant {tenant!r}")
        if len(candidates) > 1:
            shas = ", ".join(c.split(".")[0] for c in candidates)
            raise AmbiguousDataset(f"dataset {name!r} has {len(candidates)} uploads; name one by sha256: {shas}")
        sha, ext = candidates[0].split(".", 1)
        if (fmt := dataset_format(ext)) is None:
            raise DatasetNotFound(f"dataset {name!r} is stored as {candidates[0]!r}, not a format the trainer reads")
        key = prefix + candidates[0]
        return StoredDataset(key, self._uri(key), sha, self.store.size(key), fmt)

    def listing(self, tenant: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The tenant's stored datasets: name, sha256, format, size and store key of each upload."""
        root = f"datasets/{check_name('tenant', tenant)}/"
        out: list[dict[str, Any]] = []
        for name in sorted(n.rstrip("/") for n in self.store.children(root)):
            for file in sorted(f for f in self.store.children(f"{root}{name}/") if "." in f):
                sha, ext = file.split(".", 1)
                key = f"{root}{name}/{file}"
                out.append({"name": name, "sha256": sha, "format": ext, "size": self.store.size(key), "key": key})
                if len(out) >= limit:
                    return out
        return out

    def _uri(self, key: str) -> str:
        return f"{self.store.url.rstrip('/')}/{key}"

    def fetch(self, tenant: str, name: str, sha256: str, fmt: DatasetFormat, dest: Path) -> Path:
        """Download a dataset to `dest`, verified against its sha256."""
        key = dataset_key(tenant, name, sha256, fmt)
        try:
            self.store.download(key, dest)
        except ObjectNotFound as exc:
            raise ObjectNotFound(f"dataset {key} is not in the store {self.store.url}") from exc
        if (got := sha256_file(dest)) != sha256:
            raise IntegrityError(f"dataset {key} has sha256 {got}, expected {sha256}")
        return dest
