"""Ed25519 signing (model_store/signing.py) and the runner's pure-Python verifier agree."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import pytest

from fermion.model_store.signing import BadSignature, SigningError, SigningKey, verify

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "compile" / "edge_runner"))
from fermion_edge import ed25519  # the runner is its own top-level package

sys.path.pop(0)


def test_sign_and_verify_round_trip_and_refuse_changes() -> None:
    key = SigningKey.generate()
    data = os.urandom(1000)
    sig = key.sign(data)
    verify(key.public_key, data, sig)
    with pytest.raises(BadSignature):
        verify(key.public_key, data + b"x", sig)
    with pytest.raises(BadSignature):
        verify(SigningKey.generate().public_key, data, sig)


def test_the_runners_pure_python_verifier_agrees_with_cryptography() -> None:
    key = SigningKey.generate()
    for n in (0, 1, 64, 5000):
        data = os.urandom(n)
        sig = key.sign(data)
        assert ed25519.verify(key.public_key, data, sig)
        assert not ed25519.verify(key.public_key, data + b"\0", sig)
        assert not ed25519.verify(key.public_key, data, sig[:-1] + bytes([sig[-1] ^ 1]))
        assert not ed25519.verify(key.public_key, data, sig[:31] + bytes([sig[31] ^ 1]) + sig[32:])
        assert not ed25519.verify(SigningKey.generate().public_key, data, sig)
    assert not ed25519.verify(b"short", b"", bytes(64))


def test_rfc8032_test_vector_1() -> None:
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert ed25519.verify(public, b"", sig)


def test_a_key_is_made_once_under_home_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    made = SigningKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert SigningKey.load_or_create(path).public_key == made.public_key
    # the public half beside it, as trusted keys are read (base64 of the raw key)
    assert (tmp_path / "keys" / "signing.pub").read_text().strip() == base64.b64encode(made.public_key).decode()
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(SigningError):
        SigningKey.load(tmp_path / "junk.pem")


def test_a_reader_never_loads_the_signing_key_and_a_writer_refuses_a_bad_one_at_start(tmp_path: Path) -> None:
    from fermion.model_store import StoreSettings, open_registry
    from fermion.model_store.signing import SignatureError, generate_key_pair

    settings = StoreSettings(home=tmp_path)
    generate_key_pair(tmp_path / "keys")
    assert open_registry(settings).signer is not None  # a writer signs what it registers
    assert open_registry(settings, signs=False).signer is None  # inference: verifies, never signs
    (tmp_path / "keys" / "signing.key").write_text("not a key")
    with pytest.raises(SignatureError, match="cannot load the signing key"):
        open_registry(settings)  # at start: before a training, before a version is claimed
    verifying = StoreSettings(home=tmp_path, verify_signatures=True)
    assert open_registry(verifying, signs=False).verifier is not None
