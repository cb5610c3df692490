"""Pack an edge bundle: one tar holding the manifest, the model, the runner and a signature.

The format is the runner's (edge_runner/fermion_edge/archive.py): members in a fixed order with
fixed metadata, then SIGNATURE = Ed25519 signature (64 bytes) + public key (32 bytes) over every
tar byte before SIGNATURE's data (its own header included), then the tar's two zero end blocks. The tar itself is not
compressed: a compressed stream has bits that do not change what it inflates to, and every byte
of the file must be covered by the signature; members are compressed instead (the model).
The same inputs always give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RUNNER_DIR = Path(__file__).resolve().parent / "edge_runner" / "fermion_edge"
RUNNER_PACKAGE = "fermion_edge"
MANIFEST = "manifest.json"
SIGNATURE = "SIGNATURE"

Signer = Callable[[bytes], tuple[bytes, bytes]]
"""Signs bytes: returns (64-byte Ed25519 signature, 32-byte public key)."""


def runner_files() -> dict[str, bytes]:
    """The runner package's source files, by their path inside the bundle."""
    return {f"{RUNNER_PACKAGE}/{p.name}": p.read_bytes() for p in sorted(RUNNER_DIR.glob("*.py"))}


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = size, 0o644, 0, 0, 0
    return info


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


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
        # Signed: every member so far and SIGNATURE's own header (its size is fixed), so that no byte
        # a tar reader ignores (the checksum field's trailing byte, say) is left unsigned.
        header = _info(SIGNATURE, 96).tobuf(tarfile.USTAR_FORMAT, tar.encoding, tar.errors)
        start = tar.offset
        signature, public_key = sign(buf.getvalue() + header)
        if len(signature) != 64 or len(public_key) != 32:
            raise ValueError("the signer must return a 64-byte Ed25519 signature and a 32-byte public key")
        _add(tar, SIGNATURE, signature + public_key)
        if buf.getvalue()[start : start + len(header)] != header:
            raise RuntimeError("tarfile wrote a different SIGNATURE header from the one signed")
        end = tar.offset  # past SIGNATURE's data block
    return buf.getvalue()[: end + 2 * tarfile.BLOCKSIZE]  # the end blocks, without tar's record padding


def gzip_member(data: bytes) -> bytes:
    """A member's bytes gzip-compressed reproducibly (mtime 0), for `gunzip` or the runner to inflate."""
    return gzip.compress(data, compresslevel=9, mtime=0)
