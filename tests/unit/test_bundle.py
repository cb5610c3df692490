"""The edge bundle format: every byte of a bundle is covered, so one flipped byte anywhere is refused."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

from fermion.compile.bundle import gzip_member, pack
from fermion.model_store.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "compile" / "edge_runner"))
from fermion_edge import BundleRefused, open_bundle  # the runner is its own top-level package

sys.path.pop(0)


def _bundle(key: SigningKey, model: bytes = b"\x08\x01" * 100) -> bytes:
    manifest = {
        "model": {
            "file": "model.onnx.gz",
            "format": "onnx",
            "compression": "gzip",
            "size": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
        },
        "contract": {"input": {"name": "input", "shape": [-1, 4]}, "output": {"name": "logits"}},
    }
    return pack(
        {"model.onnx.gz": gzip_member(model), "fermion_edge/__init__.py": b"# runner\n"},
        manifest,
        lambda data: (key.sign(data), key.public_key),
    )


def test_every_single_byte_flip_is_refused(tmp_path: Path) -> None:
    key = SigningKey.generate()
    raw = _bundle(key)
    good = tmp_path / "good.tar"
    good.write_bytes(raw)
    assert open_bundle(good, trusted_key=key.public_key).model == b"\x08\x01" * 100
    assert _bundle(key) == raw  # reproducible: same inputs, same bytes
    bad = tmp_path / "bad.tar"
    for pos in range(len(raw)):
        bad.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :])
        with pytest.raises(BundleRefused):
            open_bundle(bad)


def test_a_bundle_re_signed_by_another_key_or_extended_is_refused(tmp_path: Path) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    path = tmp_path / "b.tar"
    path.write_bytes(_bundle(other))
    with pytest.raises(BundleRefused, match="not the trusted key"):
        open_bundle(path, trusted_key=key.public_key)
    path.write_bytes(_bundle(key) + b"\0" * 512 + b"x")
    with pytest.raises(BundleRefused, match="not tar padding"):
        open_bundle(path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("manifest.json"), io.BytesIO(b""))
    path.write_bytes(buf.getvalue())
    with pytest.raises(BundleRefused, match="unsigned"):
        open_bundle(path)
