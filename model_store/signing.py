"""Ed25519 signatures over bytes, and the key pair that makes them.

Small on purpose: edge bundles are signed with it today, registry versions can be tomorrow.
Public keys travel as 32 raw bytes (hex on the wire); private keys live in PEM (PKCS#8) files
readable by their owner only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import RegistryError


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
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """The public key's fingerprint."""
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature of `data`."""
        return self.private.sign(data)

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The key in a PEM file; SigningError when it is not an Ed25519 private key."""
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
        (path.parent / f"{path.name}.pub").write_text(key.public_key.hex() + "\n")
        return key


def verify(public_key: bytes, data: bytes, signature: bytes) -> None:
    """Return if `signature` is `public_key`'s signature of `data`; BadSignature otherwise."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature(f"signature does not match the data for key {key_id(public_key)}") from exc
