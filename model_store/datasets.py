"""Datasets in the object store: `datasets/{tenant}/{name}/{sha256}.{ext}`, content-addressed."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .backends import ObjectStore
from .cache import sha256_file
from .errors import IntegrityError, NotFound, ObjectNotFound, PreconditionFailed
from .names import check_name

DatasetFormat = Literal["npz", "csv", "parquet", "zip", "tar"]
FORMATS: tuple[DatasetFormat, ...] = ("npz", "csv", "parquet", "zip", "tar")
"""npz (arrays x, y), csv or parquet (a table with a label column), zip or tar (pictures: fermion.imaging)."""
PROFILE = "profile.json"
"""A table's profile (model_store/tables.py) lies beside it: `{sha256}.profile.json`."""


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
        stored = [f for f in self.store.children(prefix) if "." in f and not f.endswith("." + PROFILE)]
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

    def names(self, tenant: str) -> list[str]:
        """The dataset names a tenant has, sorted."""
        return sorted(self.store.children(f"datasets/{check_name('tenant', tenant)}/"))

    def uploads(self, tenant: str, name: str) -> list[StoredDataset]:
        """Every stored upload of one dataset name (by sha256)."""
        prefix = f"datasets/{check_name('tenant', tenant)}/{check_name('dataset', name)}/"
        out = []
        for f in sorted(self.store.children(prefix)):
            sha, _, ext = f.partition(".")
            if (fmt := dataset_format(ext)) is not None:
                out.append(StoredDataset(prefix + f, self._uri(prefix + f), sha, self.store.size(prefix + f), fmt))
        return out

    def put_profile(self, stored: StoredDataset, profile: bytes) -> None:
        """Keep a table's profile beside it (a profile of the same bytes is the same: written once)."""
        with contextlib.suppress(PreconditionFailed):
            self.store.put(_profile_key(stored.key), profile, if_none_match=True)

    def profile(self, key: str) -> bytes | None:
        """The profile kept beside the table at `key`, or None (npz, pictures, an upload from before profiles)."""
        try:
            return self.store.get(_profile_key(key))[0]
        except ObjectNotFound:
            return None

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


def _profile_key(key: str) -> str:
    return f"{key.rsplit('.', 1)[0]}.{PROFILE}"
