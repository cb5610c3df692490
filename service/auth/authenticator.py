"""API keys to principals: who is calling, for which tenant, with which scopes.

Key records are read from the object store and trusted for `key_ttl_s` (5 s by default): a
revocation reaches every warm function within that time. A key's first request in that time costs
a dictionary lookup and one sha256, compared in constant time; the rest, one lookup of the key
already verified. Unknown key ids are remembered for the same time, so a flood of made-up keys
does not become a flood of store reads.

The rule for tenants: the tenant is the key's. A resource of another tenant is looked for only in
the key's own, so it answers 404 as if it did not exist. Naming another tenant explicitly (a
`tenant` field or query parameter) is 403 unless the key has the `admin` scope, which may act on
any tenant by naming it. A key without the scope a route needs is 403.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fermion.model_store import SCOPES, KeyNotFound, KeyRecord, KeyStore, MalformedKey, Scope, key_id_of

from .config import SecurityConfig
from .errors import Forbidden, Unauthorized

log = logging.getLogger("fermion.security")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    tenant: str
    key_id: str
    scopes: frozenset[str]
    name: str = ""

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def require(self, scope: Scope) -> None:
        """Forbidden unless the key has `scope` (admin has every scope)."""
        if scope not in self.scopes and not self.admin:
            raise Forbidden(
                f"key {self.key_id} lacks the {scope!r} scope (it has {', '.join(sorted(self.scopes)) or 'none'})"
            )

    def tenant_for(self, named: str | None) -> str:
        """The tenant a request acts on: the key's own, or, for an admin key, the one it names."""
        if named is None or named == self.tenant:
            return self.tenant
        if self.admin:
            return named
        raise Forbidden(f"key {self.key_id} belongs to tenant {self.tenant!r}; it cannot act on tenant {named!r}")


LOCAL = Principal(tenant="default", key_id="local", scopes=frozenset(SCOPES), name="authentication off")


class Authenticator:
    """Turns an `Authorization` header into a Principal, or a 401 saying why not."""

    def __init__(self, keys: Callable[[], KeyStore], settings: SecurityConfig, *, tenant: str = "default") -> None:
        self._keys = keys
        self._settings = settings
        self._local = LOCAL if tenant == LOCAL.tenant else Principal(tenant, "local", LOCAL.scopes, LOCAL.name)
        self._cache: dict[str, tuple[KeyRecord | None, float]] = {}
        # Headers already verified, until their record is re-read: a warm request costs one lookup.
        self._verified: dict[str, tuple[Principal, float]] = {}
        if settings.auth == "off":
            log.warning(
                "AUTHENTICATION IS OFF (FERMION_AUTH=off): every caller acts as an admin of tenant %r. "
                "Use this only on a trusted single-user machine.",
                tenant,
            )

    @property
    def enabled(self) -> bool:
        return self._settings.auth == "on"

    async def principal(self, authorization: str | None) -> Principal:
        """The caller, reading the key's record from the store only when it is not cached."""
        if not self.enabled:
            return self._local
        key = _bearer(authorization)
        verified = self._verified.get(key)
        if verified is not None and time.monotonic() < verified[1]:
            return verified[0]
        key_id = _key_id(key)
        cached = self._cache.get(key_id)
        if cached is None or time.monotonic() - cached[1] >= self._settings.key_ttl_s:
            cached = await asyncio.to_thread(self._fetch, key_id)
        record = cached[0]
        if record is None or not record.matches(key):
            raise Unauthorized("unknown API key")
        if why := record.usable():
            raise Unauthorized(why)
        principal = Principal(record.tenant, record.key_id, frozenset(record.scopes), record.name)
        until = cached[1] + self._settings.key_ttl_s  # as long as the record itself is trusted...
        if record.expires_at is not None:  # ...and not past the key's expiry
            until = min(until, time.monotonic() + (record.expires_at - datetime.now(UTC)).total_seconds())
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = (principal, until)
        return principal

    def _fetch(self, key_id: str) -> tuple[KeyRecord | None, float]:
        try:
            record: KeyRecord | None = self._keys().get(key_id)
        except KeyNotFound:
            record = None
        entry = (record, time.monotonic())
        if len(self._cache) > 10_000:  # made-up key ids must not grow the cache without bound
            self._cache.clear()
        self._cache[key_id] = entry
        return entry


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no API key: send the header 'Authorization: Bearer <key>'")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    return key.strip()


def _key_id(key: str) -> str:
    try:
        return key_id_of(key)
    except MalformedKey as exc:
        raise Unauthorized(str(exc)) from exc
