"""Decompression bombs are refused from the archive's own headers, before anything is expanded."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from fermion.functions.ingest.archives import ArchiveLimits, npz_headers
from fermion.functions.ingest.datasets import validate_dataset
from fermion.functions.ingest.errors import BadUpload, UploadTooLarge

LIMITS = ArchiveLimits(max_expanded_bytes=64 << 20, max_ratio=200)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _lying_npz(declared_rows: int) -> bytes:
    """An .npz whose x.npy header declares `declared_rows` float32 rows but holds one."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({declared_rows},), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0\0\0\0"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy)
        z.writestr("y.npy", _npy(np.zeros(1)))
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_an_archive_expanding_past_the_cap_is_refused_without_expanding_it() -> None:
    bomb = _npz(x=np.zeros((1 << 20, 32), np.float32), y=np.zeros(1 << 20))  # 136 MB of zeros in ~130 kB
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(
        UploadTooLarge, match=r"expands to \d+ bytes; the limit is 67108864 \(FERMION_MAX_EXPANDED_BYTES\)"
    ):
        validate_dataset(bomb, "npz", LIMITS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated to refuse it"  # the headers were read, nothing expanded
    assert time.perf_counter() - started < 1.0


def test_a_member_that_expands_too_far_is_refused_by_ratio() -> None:
    small_bomb = _npz(x=np.zeros((1 << 18, 16), np.float32), y=np.zeros(1 << 18))  # 16 MB of zeros: under the cap
    with pytest.raises(UploadTooLarge, match=r"expands \d+-fold .* the limit is 200 \(FERMION_MAX_COMPRESSION_RATIO\)"):
        validate_dataset(small_bomb, "npz", LIMITS)


def test_a_header_that_lies_about_its_size_is_refused() -> None:
    with pytest.raises(BadUpload, match=r"declares 4000000000 bytes of data but the archive holds 4"):
        npz_headers(_lying_npz(1_000_000_000), LIMITS)


def test_ordinary_datasets_pass_and_bad_ones_are_named() -> None:
    rng = np.random.default_rng(0)
    ok = _npz(x=rng.normal(size=(500, 8)).astype(np.float32), y=rng.integers(0, 3, 500))
    validate_dataset(ok, "npz", LIMITS)
    assert npz_headers(ok, LIMITS)["x"].shape == (500, 8)
    with pytest.raises(BadUpload, match="lacks array"):
        validate_dataset(_npz(x=np.zeros((3, 2))), "npz", LIMITS)
    with pytest.raises(BadUpload, match="one row per label"):
        validate_dataset(_npz(x=np.zeros((3, 2)), y=np.zeros(4)), "npz", LIMITS)
    with pytest.raises(BadUpload, match=r"not a readable \.npz"):
        validate_dataset(b"PK\x03\x04 not really", "npz", LIMITS)
    corrupt = bytearray(ok)
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside x's compressed data: caught reading it through
    with pytest.raises(BadUpload, match=r"not a readable \.npz"):
        validate_dataset(bytes(corrupt), "npz", LIMITS)
