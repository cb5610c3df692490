"""Open a bundle and prove it before anything in it is used.

A bundle is a tar. Its last member, SIGNATURE, holds an Ed25519 signature (64 bytes) and the
signer's public key (32 bytes) over every tar byte before SIGNATURE's data (its own header
included); the manifest lists every other member's sha256. Every byte of the file is covered: up
to SIGNATURE's data by the signature, that data by the verification itself, and what follows
must be zeros (tar's end blocks). The model member is gzip-compressed
inside the signed tar, and inflates to the size and sha256 the manifest gives.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ed25519 import verify

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
    model: bytes
    """The model (ONNX or ORT format), inflated and checked."""

    @property
    def key_id(self) -> str:
        """A short fingerprint of the signer's public key."""
        return hashlib.sha256(self.public_key).hexdigest()[:16]


def _inflate(manifest: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """The model's bytes (ONNX or ORT format), inflated (at most MAX_BYTES) and checked against the manifest."""
    entry = manifest.get("model")
    if not isinstance(entry, dict) or entry.get("file") not in files:
        raise BundleRefused("the manifest does not name a model file the bundle holds")
    data = files[entry["file"]]
    if entry.get("compression") == "gzip":
        inflater = zlib.decompressobj(wbits=31)  # gzip framing
        try:
            data = inflater.decompress(data, MAX_BYTES + 1)
        except zlib.error as exc:
            raise BundleRefused(f"the model does not inflate: {exc}") from exc
        if len(data) > MAX_BYTES or not inflater.eof:
            raise BundleRefused(f"the model inflates past {MAX_BYTES} bytes, or not to its end")
    if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise BundleRefused("the inflated model does not match the manifest's size and sha256")
    return data


def _untar(raw: bytes) -> tarfile.TarFile:
    if len(raw) > MAX_BYTES:
        raise BundleRefused(f"bundle is {len(raw)} bytes; the runner reads at most {MAX_BYTES}")
    try:
        return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    except tarfile.TarError as exc:
        raise BundleRefused(f"not a bundle, or a damaged one: {exc}") from exc


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
    """Read and verify a bundle; BundleRefused says why when it is not intact or not trusted.

    The cheap checks go first (structure, padding, digests); the signature, which every bundle
    must pass whatever the others say, last.
    """
    tar = path.read_bytes()
    files, sig = _members(_untar(tar))
    blob = files.pop(SIGNATURE)
    if len(blob) != 96:
        raise BundleRefused(f"{SIGNATURE} is {len(blob)} bytes; an Ed25519 signature and key are 96")
    signature, public_key = blob[:64], blob[64:]
    if any(tar[sig.offset_data + len(blob) :]):
        raise BundleRefused("the bundle has bytes after its signature that are not tar padding")
    try:
        manifest = json.loads(files[MANIFEST])
    except (KeyError, ValueError) as exc:
        raise BundleRefused(f"the bundle's {MANIFEST} is missing or unreadable: {exc}") from exc
    listed = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    if set(listed) != set(files) - {MANIFEST}:
        raise BundleRefused(f"members {sorted(set(files) - {MANIFEST})} differ from the manifest's {sorted(listed)}")
    for name, entry in listed.items():
        if not isinstance(entry, dict) or hashlib.sha256(files[name]).hexdigest() != entry.get("sha256"):
            raise BundleRefused(f"{name} does not match its sha256 in the manifest")
    if not verify(public_key, tar[: sig.offset_data], signature):
        raise BundleRefused("the signature does not match the bundle's contents: it was altered or damaged")
    if trusted_key is not None and public_key != trusted_key:
        raise BundleRefused(
            f"signed by key {hashlib.sha256(public_key).hexdigest()[:16]}, "
            f"not the trusted key {hashlib.sha256(trusted_key).hexdigest()[:16]}"
        )
    return Bundle(manifest, files, public_key, _inflate(manifest, files))  # inflated only once signed
