"""What makes an uploaded file a dataset the trainer can read: checked before anything is stored."""

from __future__ import annotations

import csv
import io
from typing import TypeVar

from fermion.events import DatasetRef
from fermion.imaging import Limits
from fermion.model_store import DatasetFormat, dataset_key
from fermion.model_store.features import Task
from fermion.model_store.tables import TABLE_FORMATS, DatasetProfile, TableError, profile_table

from .archives import ArchiveLimits, npz_headers
from .errors import BadUpload
from .pictures import validate_pictures
from .settings import IngestSettings

NO_LIMITS = ArchiveLimits(max_expanded_bytes=1 << 62, max_ratio=float("inf"))


def validate_dataset(
    data: bytes, fmt: DatasetFormat, limits: ArchiveLimits = NO_LIMITS, pictures: Limits | None = None
) -> None:
    """Refuse files the trainer could never read, before anything is stored (or expanded past the limits).

    Blocking (it reads the whole upload through, and decodes pictures): run it off the event loop.
    """
    if fmt in ("zip", "tar"):
        validate_pictures(data, fmt, pictures or Limits())
        return
    if fmt == "npz":
        arrays = npz_headers(data, limits)
        missing = {"x", "y"} - set(arrays)
        if missing:
            raise BadUpload(f"the .npz lacks array(s) {sorted(missing)}; it has {sorted(arrays)}")
        x, y = arrays["x"], arrays["y"]
        rows = x.shape[0] if x.shape else 0
        if x.dtype.kind not in "fiub" or not y.shape or rows != y.shape[0] or rows == 0:
            raise BadUpload(f"x must be numeric with one row per label; got x {x.dtype} {x.shape}, y {y.shape}")
        return
    if fmt == "parquet":
        return
    try:
        header = next(csv.reader(io.StringIO(data[:65536].decode("utf-8"))), None)
    except UnicodeDecodeError as exc:  # its message quotes the bytes: name only where they are
        raise BadUpload(f"the .csv is not UTF-8 text (at byte {exc.start})") from None
    if not header or len(header) < 2:
        raise BadUpload("the .csv needs a header row naming at least one feature and the label column")


def upload_limits(settings: IngestSettings) -> ArchiveLimits:
    """The expansion limits the settings give uploads."""
    return ArchiveLimits(max_expanded_bytes=settings.max_expanded_bytes, max_ratio=settings.max_compression_ratio)


R = TypeVar("R", bound=DatasetRef)


def shown(tenant: str, ref: R) -> R:
    """`ref` as an answer shows it: its uri the store key, never the store's address (a local path)."""
    return ref.model_copy(update={"uri": dataset_key(tenant, ref.name, ref.sha256, ref.format)})


class UploadedDataset(DatasetRef):
    """201 of POST /v1/datasets: where the dataset is stored and, for a table, its profile."""

    profile: DatasetProfile | None = None


def check_table(
    data: bytes, fmt: DatasetFormat, label_column: str | None = None, task: Task | None = None
) -> DatasetProfile | None:
    """A table's profile (None for npz and pictures); BadUpload when no model could train on it.

    Blocking (one pass over the whole table): run it off the event loop.
    """
    if fmt not in TABLE_FORMATS:
        return None
    try:
        profile = profile_table(data, fmt, label_column=label_column, task=task)
    except TableError as exc:
        raise BadUpload(f"the .{fmt} is not a table we can read: {exc}") from exc
    if profile.problem:
        raise BadUpload(f"no model can train on this table: {profile.problem}")
    return profile
