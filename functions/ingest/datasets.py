"""What makes an uploaded file a dataset the trainer can read: checked before anything is stored."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np

from fermion.imaging import Limits
from fermion.model_store import DatasetFormat

from .errors import BadUpload
from .pictures import validate_pictures


def validate_dataset(data: bytes, fmt: DatasetFormat, limits: Limits | None = None) -> None:
    """Refuse files the trainer could never read, before anything is stored (slow for pictures: run off the loop)."""
    if fmt in ("zip", "tar"):
        validate_pictures(data, fmt, limits or Limits())
        return
    if fmt == "npz":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                missing = {"x", "y"} - set(npz.files)
                if missing:
                    raise BadUpload(f"the .npz lacks array(s) {sorted(missing)}; it has {sorted(npz.files)}")
                x, y = npz["x"], npz["y"]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise BadUpload(f"not a readable .npz file: {exc}") from exc
        if x.dtype.kind not in "fiub" or len(x) != len(y) or len(x) == 0:
            raise BadUpload(f"x must be numeric with one row per label; got x {x.dtype} {x.shape}, y {y.shape}")
        return
    try:
        header = next(csv.reader(io.StringIO(data[:65536].decode("utf-8"))), None)
    except UnicodeDecodeError as exc:
        raise BadUpload(f"the .csv is not UTF-8 text: {exc}") from exc
    if not header or len(header) < 2:
        raise BadUpload("the .csv needs a header row naming at least one feature and the label column")
