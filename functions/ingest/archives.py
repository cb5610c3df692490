"""What an uploaded .npz holds, read from its own headers before anything is expanded.

An .npz is a zip of .npy files. A few megabytes can declare gigabytes (a decompression bomb), so
nothing is decompressed until the zip's central directory (each member's compressed and
uncompressed size) and each .npy header (dtype and shape) have been checked against the limits:
the whole archive's expanded size, and each member's compression ratio. Then each member is read
through once in small pieces, which checks its CRC without keeping it in memory.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from .errors import BadUpload, UploadTooLarge

_PIECE = 1 << 20
# Below this many expanded bytes a member's ratio does not matter (a small array of zeros compresses well).
RATIO_FLOOR = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """How large an upload may become once expanded."""

    max_expanded_bytes: int
    max_ratio: float


@dataclass(frozen=True)
class ArrayHeader:
    """One array of an .npz, as its .npy header declares it."""

    dtype: np.dtype
    shape: tuple[int, ...]


def npz_headers(data: bytes, limits: ArchiveLimits) -> dict[str, ArrayHeader]:
    """The arrays of an .npz by name, checked against `limits` before any of them is expanded."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise BadUpload(f"not a readable .npz file: {exc}") from exc
    with archive:
        members = archive.infolist()
        expanded = sum(m.file_size for m in members)
        if expanded > limits.max_expanded_bytes:
            raise UploadTooLarge(
                f"the .npz expands to {expanded} bytes; the limit is {limits.max_expanded_bytes} "
                "(FERMION_MAX_EXPANDED_BYTES)"
            )
        for m in members:
            ratio = m.file_size / max(m.compress_size, 1)
            if m.file_size > RATIO_FLOOR and ratio > limits.max_ratio:
                raise UploadTooLarge(
                    f"member {m.filename!r} of the .npz expands {ratio:.0f}-fold ({m.compress_size} to "
                    f"{m.file_size} bytes); the limit is {limits.max_ratio:.0f} (FERMION_MAX_COMPRESSION_RATIO)"
                )
        return {m.filename.removesuffix(".npy"): _member(archive, m) for m in members}


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> ArrayHeader:
    """A member's .npy header, its declared size checked against the zip's, its bytes read through once."""
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            header_end = f.tell()
            if dtype.hasobject:
                raise BadUpload(f"array {member.filename!r} holds Python objects; only numeric arrays are read")
            declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if declared != member.file_size - header_end:
                raise BadUpload(
                    f"array {member.filename!r} declares {declared} bytes of data but the archive holds "
                    f"{member.file_size - header_end}"
                )
            while f.read(_PIECE):  # the CRC is checked at the end of the member
                pass
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise BadUpload(f"not a readable .npz file: member {member.filename!r}: {exc}") from exc
    return ArrayHeader(dtype, tuple(shape))
