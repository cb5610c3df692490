"""What makes an uploaded file a dataset the trainer can read: checked before anything is stored."""

from __future__ import annotations

import csv
import io

from fermion.events import DatasetRef
from fermion.imaging import Limits
from fermion.model_store import DatasetFormat, dataset_key

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
    try:
        header = next(csv.reader(io.StringIO(data[:65536].decode("utf-8"))), None)
    except UnicodeDecodeError as exc:  # its message quotes the bytes: name only where they are
        raise BadUpload(f"the .csv is not UTF-8 text (at byte {exc.start})") from None
    if not header or len(header) < 2:
        raise BadUpload("the .csv needs a header row naming at least one feature and the label column")


def upload_limits(settings: IngestSettings) -> ArchiveLimits:
    """The expansion limits the settings give uploads."""
    return ArchiveLimits(max_expanded_bytes=settings.max_expanded_bytes, max_ratio=settings.max_compression_ratio)


def shown(tenant: str, ref: DatasetRef) -> DatasetRef:
    """`ref` as an answer shows it: its uri the store key, never the store's address (a local path)."""
    return ref.model_copy(update={"uri": dataset_key(tenant, ref.name, ref.sha256, ref.format)})
