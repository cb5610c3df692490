"""Datasets of pictures in a zip or tar archive, checked at the door and read by the trainer.

Two layouts:

- one folder per class (the ImageFolder convention), optionally inside one top folder:
  `cats/1.png, dogs/2.jpg` or `pets/cats/1.png, ...`; files at the top that are not pictures
  (a README) are ignored;
- a CSV naming the pictures and their labels (`file,label`; the file column may also be called
  `filename`, `path` or `image`), paths relative to the CSV's folder.

Limits hold before anything is decoded: the number of files, each file's bytes, the archive's
total unpacked bytes (from the archive's own index, then counted again as members are read,
so an index that lies does not help), and each picture's pixels (from its header).
"""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import BadArchive, ImageError
from .pictures import DEFAULT_MAX_PIXELS, decode, infer_contract, load_pixels, probe

if TYPE_CHECKING:
    from fermion.events import ImageContract

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
FILE_COLUMNS = ("file", "filename", "path", "image")
T = TypeVar("T")
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    RuntimeError,  # an encrypted zip member
    NotImplementedError,  # a compression method zipfile lacks
)


@dataclass(frozen=True)
class Limits:
    """What an archive of pictures may hold."""

    max_files: int = 100_000
    max_file_bytes: int = 32 << 20
    max_total_bytes: int = 1 << 30
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Picture:
    """One labelled picture in an archive."""

    name: str
    label: str


@dataclass(frozen=True)
class PictureSet:
    """Decoded pictures (uint8, N x H x W x C), their labels, and the contract they follow."""

    pixels: np.ndarray
    labels: list[str]
    contract: ImageContract
    names: list[str]


class _Reader:
    """Regular files of a zip or tar by name, each read once and bounded by the limits."""

    def __init__(self, data: bytes, fmt: str, limits: Limits) -> None:
        self.limits, self.read_bytes = limits, 0
        self.dirs: set[str] = set()
        self.sizes: dict[str, int] = {}
        if fmt == "zip":
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(io.BytesIO(data))
            self._tar: tarfile.TarFile | None = None
            for info in self._zip.infolist():
                self._add(info.filename, info.file_size, info.is_dir())
        elif fmt == "tar":
            # Read from memory and closed with the archive's bytes; no file handle outlives it.
            self._zip, self._tar = None, tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
            self._members: dict[str, tarfile.TarInfo] = {}
            for member in self._tar:
                if member.issym() or member.islnk():
                    raise BadArchive(f"{member.name}: links are not allowed in a dataset archive")
                if member.isfile() or member.isdir():
                    self._add(member.name, member.size, member.isdir())
                    self._members[member.name.rstrip("/")] = member
        else:
            raise BadArchive(f"unsupported archive format {fmt!r}: use zip or tar")
        total = sum(self.sizes.values())
        if total > limits.max_total_bytes:
            raise BadArchive(f"the archive unpacks to {total} bytes; the limit is {limits.max_total_bytes}")

    def _add(self, name: str, size: int, is_dir: bool) -> None:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            raise BadArchive(f"{name}: absolute paths and '..' are not allowed in a dataset archive")
        if is_dir:
            self.dirs.add(str(path))
            return
        if len(self.sizes) >= self.limits.max_files:
            raise BadArchive(f"the archive holds more than {self.limits.max_files} files")
        if size > self.limits.max_file_bytes:
            raise BadArchive(f"{name}: {size} bytes; the limit per file is {self.limits.max_file_bytes}")
        self.sizes[str(path)] = size

    def read(self, name: str) -> bytes:
        """One member's bytes, never more than the per-file limit nor past the total."""
        cap = self.limits.max_file_bytes
        if self._zip is not None:
            with self._zip.open(name) as f:
                data = f.read(cap + 1)
        else:
            assert self._tar is not None
            member = self._tar.extractfile(self._members[name])
            data = member.read(cap + 1) if member is not None else b""
        self.read_bytes += len(data)
        if len(data) > cap or self.read_bytes > self.limits.max_total_bytes:
            raise BadArchive(f"{name}: unpacks past the archive limits (its index under-states its size)")
        return data


@contextmanager
def _reading(data: bytes, fmt: str, limits: Limits) -> Iterator[_Reader]:
    try:
        yield _Reader(data, fmt, limits)
    except ImageError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise BadArchive(f"not a readable {fmt} archive: {type(exc).__name__}: {exc}") from exc


def _junk(path: PurePosixPath) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in path.parts)


def index_archive(reader: _Reader) -> list[Picture]:
    """The labelled pictures an archive holds, by its layout; BadArchive naming what is wrong."""
    names = [n for n in reader.sizes if not _junk(PurePosixPath(n))]
    tables = [n for n in names if n.lower().endswith(".csv")]
    if len(tables) == 1:
        return _from_table(reader, tables[0])
    if len(tables) > 1:
        raise BadArchive(f"the archive holds {len(tables)} CSV files ({', '.join(sorted(tables)[:3])}); keep one")
    paths = [PurePosixPath(n) for n in names]
    tops = {p.parts[0] for p in paths if len(p.parts) > 1}
    strip = 1 if len(tops) == 1 and all(len(p.parts) >= 3 for p in paths if _is_picture(p)) else 0
    pictures, classes = [], set()
    for path in sorted(paths):
        parts = path.parts[strip:]
        if len(parts) < 2:
            if _is_picture(path):
                raise BadArchive(f"{path}: a picture outside any class folder (use CLASS/{path.name})")
            continue  # a README beside the class folders
        if not _is_picture(path):
            raise BadArchive(f"{path}: not a picture ({', '.join(PICTURE_SUFFIXES)}) in class folder {parts[0]!r}")
        pictures.append(Picture(str(path), parts[0]))
        classes.add(parts[0])
    for folder in reader.dirs:
        parts = PurePosixPath(folder).parts[strip:]
        if len(parts) == 1 and not _junk(PurePosixPath(folder)) and parts[0] not in classes:
            raise BadArchive(f"class folder {folder!r} holds no pictures")
    _check_classes(classes)
    return pictures


def _from_table(reader: _Reader, table: str) -> list[Picture]:
    try:
        rows = list(csv.reader(io.StringIO(reader.read(table).decode("utf-8-sig"))))
    except UnicodeDecodeError as exc:
        raise BadArchive(f"{table} is not UTF-8 text: {exc}") from exc
    header = [h.strip().lower() for h in rows[0]] if rows else []
    file_col = next((header.index(c) for c in FILE_COLUMNS if c in header), None)
    if file_col is None or "label" not in header:
        raise BadArchive(f"{table} needs a header with a file column ({'/'.join(FILE_COLUMNS)}) and 'label'")
    label_col, base = header.index("label"), PurePosixPath(table).parent
    pictures = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise BadArchive(f"{table} line {n} has {len(row)} fields; the header has {len(header)}")
        path = base / row[file_col].strip()
        if str(path) not in reader.sizes:
            raise BadArchive(f"{table} line {n} names {row[file_col]!r}, which is not in the archive")
        if not _is_picture(path):
            raise BadArchive(f"{table} line {n}: {row[file_col]!r} is not a picture ({', '.join(PICTURE_SUFFIXES)})")
        pictures.append(Picture(str(path), row[label_col].strip()))
    _check_classes({p.label for p in pictures})
    return pictures


def _is_picture(path: PurePosixPath) -> bool:
    return path.suffix.lower() in PICTURE_SUFFIXES


def _check_classes(classes: set[str]) -> None:
    if len(classes) < 2:
        raise BadArchive(f"the archive has {len(classes)} class(es); a classifier needs at least two")


def check_archive(data: bytes, fmt: str, limits: Limits = Limits()) -> dict[str, int]:
    """Refuse an archive the trainer could not use: layout, limits, and every picture decoded once."""
    with _reading(data, fmt, limits) as reader:
        pictures = index_archive(reader)
        for picture in pictures:
            _named(picture.name, load_pixels, reader.read(picture.name), limits.max_pixels)
    return {"pictures": len(pictures), "classes": len({p.label for p in pictures})}


def read_archive(data: bytes, fmt: str, contract: ImageContract | None, limits: Limits = Limits()) -> PictureSet:
    """Every labelled picture decoded as the contract says (inferred from the pictures when None)."""
    with _reading(data, fmt, limits) as reader:
        pictures = index_archive(reader)
        blobs = [reader.read(p.name) for p in pictures]
    named = list(zip(pictures, blobs, strict=True))
    if contract is None:
        contract = infer_contract(_named(p.name, probe, b, limits.max_pixels) for p, b in named)
    pixels = np.stack([_named(p.name, decode, b, contract, limits.max_pixels) for p, b in named])
    return PictureSet(pixels, [p.label for p in pictures], contract, [p.name for p in pictures])


def _named(name: str, step: Callable[..., T], *args: Any) -> T:
    """`step(*args)`, its refusal prefixed with the picture's name in the archive."""
    try:
        return step(*args)
    except ImageError as exc:
        raise type(exc)(f"{name}: {exc}") from exc
