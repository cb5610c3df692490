"""Pictures made by the tests: scikit-learn's digits rendered as PNG files, archives, broken pictures."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digit_pictures(size: int = 28) -> tuple[list[Image.Image], np.ndarray]:
    """Every digit (8x8, 0-16) as a `size` x `size` grayscale picture, white on black, and its class."""
    digits = load_digits()
    pictures = [
        Image.fromarray((d.reshape(8, 8) * (255 / 16)).round().astype(np.uint8), "L").resize(
            (size, size), Image.Resampling.BILINEAR
        )
        for d in digits.data
    ]
    return pictures, digits.target


def png(picture: Image.Image) -> bytes:
    """A picture as PNG bytes."""
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


def jpeg(picture: Image.Image, quality: int = 90) -> bytes:
    """A picture as JPEG bytes."""
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_class_folders(root: Path, pictures: list[Image.Image], labels: np.ndarray) -> list[Path]:
    """`root/<label>/<n>.png` for each picture; returns the files in order."""
    files = []
    for n, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        path = root / str(label) / f"{n:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(picture))
        files.append(path)
    return files


def zip_folder(root: Path, dest: Path) -> Path:
    """Zip a folder, paths relative to it."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, path.relative_to(root).as_posix())
    return dest


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of the given members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height grayscale pixels, with a few bytes of data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )


def gif(picture: Image.Image) -> bytes:
    """A picture as a GIF (an unsupported format)."""
    buf = io.BytesIO()
    picture.save(buf, "GIF")
    return buf.getvalue()
