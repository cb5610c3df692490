"""Open a bundle and prove it before anything in it is used.

A bundle is a gzip-compressed tar. Its last member, SIGNATURE, holds an Ed25519 signature (64
bytes) and the signer's public key (32 bytes) over every tar byte before SIGNATURE's own header;
the manifest lists every other member's sha256. Every byte of the file is covered: the gzip header
must be the one the packer writes, the deflate stream by gzip's CRC, the signed members by the
signature, SIGNATURE's header by tar's checksum, and what follows it must be the tar's zero padding.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ed25519 import verify

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no flags, mtime 0, level 9, OS unknown
SIGNATURE = "SIGNATURE"
MANIFEST = "manifest.json"
MAX_BYTES = 1 << 30


class BundleRefused(Exception):
    """The bundle failed a check; the message says which. Nothing in it was loaded."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest, its members' bytes and who signed it."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    public_key: bytes

    @property
    def key_id(self) -> str:
        """A short fingerprint of the signer's public key."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]

    @property
    def model(self) -> bytes:
        """The model's bytes (ONNX or ORT format)."""
        return self.files[self.manifest["model"]["file"]]


def _untar(raw: bytes) -> tuple[bytes, tarfile.TarFile]:
    if len(raw) > MAX_BYTES:
        raise BundleRefused(f"bundle is {len(raw)} bytes; the runner reads at most {MAX_BYTES}")
    if not raw.startswith(GZIP_HEADER):
        raise BundleRefused("not a Fermion bundle: the gzip header is not the one the packer writes")
    try:
        tar = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleRefused(f"the bundle's compressed stream is damaged: {exc}") from exc
    try:
        return tar, tarfile.open(fileobj=io.BytesIO(tar), mode="r:")
    except tarfile.TarError as exc:
        raise BundleRefused(f"the bundle's tar is damaged: {exc}") from exc


def _members(archive: tarfile.TarFile) -> tuple[dict[str, bytes], tarfile.TarInfo]:
    try:
        members = archive.getmembers()
    except tarfile.TarError as exc:
        raise BundleRefused(f"the bundle's tar is damaged: {exc}") from exc
    if not members or members[-1].name != SIGNATURE or not members[-1].isfile():
        raise BundleRefused(f"the bundle is unsigned: its last member is not {SIGNATURE}")
    files: dict[str, bytes] = {}
    for m in members:
        if not m.isfile() or m.name in files:
            raise BundleRefused(f"unexpected tar member {m.name!r} (only regular files, each once)")
        extracted = archive.extractfile(m)
        assert extracted is not None
        files[m.name] = extracted.read()
    return files, members[-1]


def open_bundle(path: Path, trusted_key: bytes | None = None) -> Bundle:
    """Read and verify a bundle; BundleRefused says why when it is not intact or not trusted."""
    tar, archive = _untar(path.read_bytes())
    files, sig = _members(archive)
    blob = files.pop(SIGNATURE)
    if len(blob) != 96:
        raise BundleRefused(f"{SIGNATURE} is {len(blob)} bytes; an Ed25519 signature and key are 96")
    signature, public_key = blob[:64], blob[64:]
    if any(tar[sig.offset_data + len(blob) :]):
        raise BundleRefused("the bundle has bytes after its signature that are not tar padding")
    if not verify(public_key, tar[: sig.offset], signature):
        raise BundleRefused("the signature does not match the bundle's contents: it was altered or damaged")
    if trusted_key is not None and public_key != trusted_key:
        raise BundleRefused(
            f"signed by key {hashlib.sha256(public_key).hexdigest()[:16]}, "
            f"not the trusted key {hashlib.sha256(trusted_key).hexdigest()[:16]}"
        )
    try:
        manifest = json.loads(files[MANIFEST])
    except (KeyError, ValueError) as exc:
        raise BundleRefused(f"the bundle's {MANIFEST} is missing or unreadable: {exc}") from exc
    listed = manifest.get("files", {})
    if set(listed) != set(files) - {MANIFEST}:
        raise BundleRefused(f"members {sorted(set(files) - {MANIFEST})} differ from the manifest's {sorted(listed)}")
    for name, entry in listed.items():
        if hashlib.sha256(files[name]).hexdigest() != entry.get("sha256"):
            raise BundleRefused(f"{name} does not match its sha256 in the manifest")
    return Bundle(manifest, files, public_key)
