"""API keys in a registry's store and the header that carries one."""

from __future__ import annotations

from fermion.model_store import KeyStore, Registry


def api_key(registry: Registry, *scopes: str, tenant: str = "default") -> str:
    """A fresh API key in the registry's store (the store every function reads keys from)."""
    _, key = KeyStore(registry.store).create(tenant, list(scopes) or ["infer"])  # type: ignore[arg-type]
    return key


def bearer(key: str) -> dict[str, str]:
    """The header that carries `key`."""
    return {"Authorization": f"Bearer {key}"}
