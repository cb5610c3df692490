"""API keys, kept in the object store beside the registry: `keys/{key_id}.json`.

Every replica and every Lambda reads the same records, so a key created or revoked anywhere is
seen everywhere (within the readers' cache TTL). Only `sha256$<hex>` of a key is stored.

A key reads `fmn_<key id>_<secret><checksum>`: a prefix that secret scanners can spot, a key id
to find the record without scanning, 32 base62 characters (190 bits) of randomness, and a CRC32
of the rest (6 base62 characters), so a mistyped or truncated key is refused before any lookup.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import zlib
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backends import ObjectStore
from .errors import IntegrityError, NotFound, ObjectNotFound, PreconditionFailed, RegistryError
from .names import check_name

Scope = Literal["upload", "train", "promote", "infer", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("upload", "train", "promote", "infer", "read", "admin")
PREFIX = "fmn_"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY = re.compile(rf"^{PREFIX}(?P<id>[0-9A-Za-z]{{12}})_(?P<secret>[0-9A-Za-z]{{32}})(?P<crc>[0-9A-Za-z]{{6}})$")


class KeyNotFound(NotFound):
    """No key with that id."""


class MalformedKey(RegistryError):
    """A string that cannot be a Fermion key (wrong shape or checksum): refused before any lookup."""


class KeyRecord(BaseModel):
    """What is stored for a key: never the key itself."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key_id: str
    tenant: str
    name: str = ""
    scopes: builtins.list[Scope] = Field(min_length=1)
    hash: str
    """`sha256$<hex>`: the algorithm is part of the value, so it can change without a migration."""
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def masked(self) -> str:
        """A form safe to show: the prefix and the key id."""
        return f"{PREFIX}{self.key_id}_…"

    def usable(self, now: datetime | None = None) -> str | None:
        """None if the key may be used now; else why not."""
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return f"key {self.masked} was revoked at {self.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
        if self.expires_at is not None and now >= self.expires_at:
            return f"key {self.masked} expired at {self.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        return None

    def matches(self, key: str) -> bool:
        """Whether `key` is this record's key (a timing-safe comparison of hashes)."""
        return hmac.compare_digest(self.hash, key_hash(key))


def key_hash(key: str) -> str:
    """The stored form of a key."""
    return "sha256$" + hashlib.sha256(key.encode()).hexdigest()


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), 6)


def key_id_of(key: str) -> str:
    """The key id inside a well-formed key; MalformedKey for anything else."""
    m = _KEY.match(key)
    if m is None or _checksum(f"{m['id']}_{m['secret']}") != m["crc"]:
        raise MalformedKey("not a Fermion API key (expected fmn_<id>_<secret>, with a valid checksum)")
    return m["id"]


def new_key() -> tuple[str, str]:
    """A fresh (key id, key)."""
    key_id = "".join(secrets.choice(_BASE62) for _ in range(12))
    secret = "".join(secrets.choice(_BASE62) for _ in range(32))
    return key_id, f"{PREFIX}{key_id}_{secret}{_checksum(f'{key_id}_{secret}')}"


def mint_key(
    tenant: str, scopes: builtins.list[Scope], *, name: str = "", expires_in: timedelta | None = None
) -> tuple[KeyRecord, str]:
    """A new key and its record, stored nowhere yet (KeyStore.create stores it; a deployment adds it later)."""
    check_name("tenant", tenant)
    key_id, key = new_key()
    now = datetime.now(UTC)
    record = KeyRecord(
        key_id=key_id,
        tenant=tenant,
        name=name[:100],
        scopes=sorted(set(scopes), key=SCOPES.index),
        hash=key_hash(key),
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    return record, key


class KeyStore:
    """Create, look up, list and revoke keys."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def _path(key_id: str) -> str:
        return f"keys/{key_id}.json"

    def create(
        self,
        tenant: str,
        scopes: builtins.list[Scope],
        *,
        name: str = "",
        expires_in: timedelta | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key for `tenant` with `scopes`; returns its record and the key (shown once, never stored)."""
        record, key = mint_key(tenant, scopes, name=name, expires_in=expires_in)
        self.store.put(self._path(record.key_id), record.model_dump_json().encode(), if_none_match=True)
        return record, key

    def add(self, record: KeyRecord) -> bool:
        """Store a record minted elsewhere (a deployment's first admin key); False if its id is taken."""
        try:
            self.store.put(self._path(record.key_id), record.model_dump_json().encode(), if_none_match=True)
        except PreconditionFailed:
            return False
        return True

    def get(self, key_id: str) -> KeyRecord:
        """The record of `key_id`; KeyNotFound if there is none."""
        try:
            raw, _ = self.store.get(self._path(key_id))
        except ObjectNotFound:
            raise KeyNotFound(f"no key {PREFIX}{key_id}_…") from None
        try:
            return KeyRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"key record {key_id} is unreadable: {exc}") from exc

    def list(self, tenant: str | None = None) -> builtins.list[KeyRecord]:
        """Every key (of `tenant`), oldest first."""
        records = [self.get(k.removeprefix("keys/").removesuffix(".json")) for k in self.store.list("keys/")]
        return sorted((r for r in records if tenant is None or r.tenant == tenant), key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark a key revoked (kept, for the audit trail); revoking twice is fine."""
        for _ in range(10):
            try:
                raw, etag = self.store.get(self._path(key_id))
            except ObjectNotFound:
                raise KeyNotFound(f"no key {PREFIX}{key_id}_…") from None
            record = KeyRecord.model_validate_json(raw)
            if record.revoked_at is not None:
                return record
            revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
            try:
                self.store.put(self._path(key_id), revoked.model_dump_json().encode(), if_match=etag)
            except PreconditionFailed:
                continue
            return revoked
        raise RegistryError(f"key {key_id} kept changing while it was revoked")
