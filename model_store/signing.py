"""Ed25519 signatures: on registered versions (the registry signs, readers verify) and over bytes.

The second half signs and checks plain bytes: edge bundles and federated updates.

A version's `signature.json` holds an Ed25519 signature over the exact bytes of its
`manifest.json`; it is written (create-only) just before the manifest, so a version that exists is
signed. The manifest carries every file's sha256, so a valid signature vouches for every byte the
fetch later verifies. Signing the stored bytes, not a re-serialisation, keeps old signatures valid
whatever the manifest model becomes.

Keys are raw 32-byte Ed25519 keys: private keys as PEM files, public keys as base64 strings or
`.pub` files holding one; a key id is the first 16 hex digits of the public key's sha256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import IntegrityError, RegistryError

SIGNATURE_FILE = "signature.json"


class SignatureError(IntegrityError):
    """A version is unsigned, signed by an untrusted key, or its manifest does not match its signature."""


class VersionSignature(BaseModel):
    """The content of `signature.json`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    algorithm: str = "ed25519"
    key_id: str
    signature: str
    """base64 of the 64-byte signature over `manifest.json`'s bytes."""


def public_key_text(key: Ed25519PublicKey) -> str:
    """A public key as base64 of its 32 raw bytes (the form `trusted_keys` takes)."""
    raw = key.public_bytes_raw()
    return base64.b64encode(raw).decode()


def _fingerprint(key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = key.public_bytes_raw()
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs manifests with one private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = _fingerprint(private_key.public_key())

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Load a PEM (PKCS#8) Ed25519 private key."""
        from cryptography.hazmat.primitives import serialization  # PEM: signers only (10 ms of imports)

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise SignatureError(f"cannot load the signing key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"{path} is not an Ed25519 private key")
        return cls(key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key readers must trust."""
        return self._key.public_key()

    def sign(self, manifest: bytes) -> bytes:
        """`signature.json`'s bytes for a manifest."""
        value = base64.b64encode(self._key.sign(manifest)).decode()
        return VersionSignature(key_id=self.key_id, signature=value).model_dump_json().encode()


class Verifier:
    """Checks manifests against a set of trusted public keys."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {_fingerprint(k): k for k in public_keys}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Verifier:
        """Trust base64 raw public keys; refuses anything else by name."""
        keys = []
        for text in texts:
            try:
                keys.append(Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True)))
            except (ValueError, binascii.Error) as exc:
                raise SignatureError(f"not an Ed25519 public key (base64 of 32 bytes): {text[:20]}…: {exc}") from exc
        return cls(keys)

    @property
    def trusted(self) -> list[str]:
        """Key ids of the trusted keys."""
        return sorted(self._keys)

    def verify(self, manifest: bytes, signature: bytes | None, what: str) -> None:
        """Raise SignatureError unless `signature` (signature.json's bytes) is a trusted key's over `manifest`."""
        if signature is None:
            raise SignatureError(f"{what} is not signed; only signed versions are served")
        try:
            seal = VersionSignature.model_validate_json(signature)
        except ValidationError as exc:
            raise SignatureError(f"{what}: its signature file is unreadable") from exc
        key = self._keys.get(seal.key_id)
        if seal.algorithm != "ed25519" or key is None:
            raise SignatureError(
                f"{what} is signed by key {seal.key_id!r}, not trusted here (trusted: {self.trusted or 'none'})"
            )
        try:
            key.verify(base64.b64decode(seal.signature), manifest)
        except (InvalidSignature, ValueError, binascii.Error) as exc:
            raise SignatureError(f"{what}: the manifest does not match its signature (tampered?)") from exc


def generate_key_pair(directory: Path, name: str = "signing") -> tuple[Path, Path]:
    """Write `{name}.key` (PEM, mode 0600) and `{name}.pub` (base64) in `directory`, unless they exist."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    if not private.exists():
        from cryptography.hazmat.primitives import serialization  # PEM: signers only (10 ms of imports)

        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        private.touch(mode=0o600)
        private.write_bytes(pem)
        public.write_text(public_key_text(key.public_key()) + "\n")
    return private, public


# --- signatures over bytes: edge bundles, federated updates ------------------------------------


class SigningError(RegistryError):
    """A key that cannot be read or used."""


class BadSignature(SigningError):
    """A signature that does not match the bytes and the key."""


def key_id(public_key: bytes) -> str:
    """A short, stable fingerprint of a public key (the first 16 hex digits of its sha256)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key, with its public half as raw bytes."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key pair."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        """The 32-byte public key."""
        return self.private.public_key().public_bytes_raw()

    @property
    def key_id(self) -> str:
        """The public key's fingerprint."""
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of `data`."""
        return self.private.sign(data)

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        from cryptography.hazmat.primitives import serialization  # PEM: signers only (10 ms of imports)

        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The key in a PEM file; SigningError when it is not an Ed25519 private key."""
        from cryptography.hazmat.primitives import serialization  # PEM: signers only (10 ms of imports)

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(f"cannot read the signing key {path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key at `path`, made (mode 0600) if there is none; two processes racing get the same key."""
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.pem())
        try:
            os.link(tmp, path)  # create-only and atomic: the file appears whole, or another process won
        except FileExistsError:
            return cls.load(path)
        finally:
            tmp.unlink()
        # Beside it, the public half as trusted keys are read (base64 of the raw key, HOME/keys/*.pub).
        path.with_suffix(".pub").write_text(public_key_text(key.private.public_key()) + "\n")
        return key


def verify(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Return if `signature` is `public_key`'s signature of `data`; BadSignature otherwise."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature(f"signature does not match the data for key {key_id(public_key)}") from exc
