"""Pack an edge bundle: one gzip-compressed tar holding the model, its manifest, the runner and a signature.

The format is the runner's (edge_runner/fermion_edge/archive.py): members in a fixed order with
fixed metadata, then SIGNATURE = Ed25519 signature (64 bytes) + public key (32 bytes) over every
tar byte before SIGNATURE's header, then tar's zero padding; gzip with a fixed header at level 9. The
same inputs always give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RUNNER_DIR = Path(__file__).resolve().parent / "edge_runner" / "fermion_edge"
RUNNER_PACKAGE = "fermion_edge"
MANIFEST = "manifest.json"
SIGNATURE = "SIGNATURE"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no flags, mtime 0, best, OS unknown

Signer = Callable[[bytes], tuple[bytes, bytes]]
"""Signs bytes: returns (64-byte Ed25519 signature, 32-byte public key)."""


def runner_files() -> dict[str, bytes]:
    """The runner package's source files, by their path inside the bundle."""
    return {f"{RUNNER_PACKAGE}/{p.name}": p.read_bytes() for p in sorted(RUNNER_DIR.glob("*.py"))}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
    tar.addfile(info, io.BytesIO(data))


def pack(files: Mapping[str, bytes], manifest: dict[str, Any], sign: Signer) -> bytes:
    """The signed bundle: `files` (model, runner, ...) listed with their sha256 in the manifest."""
    if MANIFEST in files or SIGNATURE in files:
        raise ValueError(f"{MANIFEST} and {SIGNATURE} are the packer's own members")
    listed = {name: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for name, d in files.items()}
    body = json.dumps({**manifest, "files": listed}, indent=2, sort_keys=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, MANIFEST, body)
        for name in sorted(files):
            _add(tar, name, files[name])
        signed = buf.getvalue()  # every member so far, headers included; SIGNATURE's header comes next
        signature, public_key = sign(signed)
        if len(signature) != 64 or len(public_key) != 32:
            raise ValueError("the signer must return a 64-byte Ed25519 signature and a 32-byte public key")
        _add(tar, SIGNATURE, signature + public_key)
    return _gzip(buf.getvalue())


def _gzip(data: bytes) -> bytes:
    """gzip with the fixed header the runner expects (Python versions differ in the OS byte they write)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
