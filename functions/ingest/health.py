"""Liveness and readiness of the ingest function.

Live: the process answers. Ready: it could accept a request now, so its connection to NATS is up
(not reconnecting) and the object store answers; otherwise a 503 says which is not.
"""

from __future__ import annotations

import asyncio

from fermion.model_store import StoreError

from .deps import BusDep, RegistryDep
from .errors import Unavailable


async def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


async def ready(bus: BusDep, registry: RegistryDep) -> dict[str, bool]:
    """NATS connected and the object store reachable; a 503 naming what is not."""
    if not bus.connected:
        raise Unavailable("not ready: the connection to NATS is down (reconnecting)")
    try:
        await asyncio.to_thread(registry.store.children, "models/")
    except StoreError as exc:
        raise Unavailable(f"not ready: the object store does not answer: {exc}") from exc
    return {"ready": True}
