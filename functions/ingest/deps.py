"""The ingest function's dependencies: settings, the bus, the dataset store, the registry.

Each is built once per process by a cached getter and injected with `Depends`, so tests swap
them with `app.dependency_overrides`.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Annotated

from fastapi import Depends

from fermion.events import Bus, BusError
from fermion.model_store import DatasetStore, KeyStore, Registry, open_registry
from fermion.service.observability.ingest import ingest_metrics
from fermion.service.observability.tracing import tracing

from .errors import Unavailable
from .settings import IngestSettings, get_settings


@lru_cache(maxsize=1)
def get_datasets() -> DatasetStore:
    """The dataset store, opened once (on the registry's object store)."""
    return DatasetStore(get_registry().store)


@lru_cache(maxsize=1)
def get_keys() -> KeyStore:
    """The API keys, on the registry's object store."""
    return KeyStore(get_registry().store)


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The registry, opened once."""
    return open_registry(get_settings())


class _BusHolder:
    """One NATS connection per process and event loop, made on first use."""

    bus: Bus | None = None
    loop: asyncio.AbstractEventLoop | None = None


async def get_bus(settings: Annotated[IngestSettings, Depends(get_settings)]) -> Bus:
    """The process's bus connection (a new one if the event loop changed, as under Mangum).

    A connection that is reconnecting is kept, not replaced: it refuses publishes meanwhile
    (BusUnavailable, a 503), and a second connection would only pile up beside it, never closed.
    """
    loop = asyncio.get_running_loop()
    if _BusHolder.bus is None or _BusHolder.loop is not loop or _BusHolder.bus.closed:
        try:
            bus = await Bus.from_settings(settings, name="fermion-ingest", timeout_s=3.0)
        except BusError as exc:
            raise Unavailable(f"event bus unavailable: {exc}") from exc
        if settings.metrics:
            bus.on_publish = ingest_metrics().published
        if tracing("ingest").enabled:
            bus.context_headers = tracing("ingest").inject
        _BusHolder.bus, _BusHolder.loop = bus, loop
    return _BusHolder.bus


async def close_bus() -> None:
    """Close the process's bus connection at shutdown, if this event loop made it (another loop's is not ours)."""
    bus = _BusHolder.bus
    if bus is not None and _BusHolder.loop is asyncio.get_running_loop():
        _BusHolder.bus = _BusHolder.loop = None
        await bus.close()


Settings = Annotated[IngestSettings, Depends(get_settings)]
BusDep = Annotated[Bus, Depends(get_bus)]
Datasets = Annotated[DatasetStore, Depends(get_datasets)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
Keys = Annotated[KeyStore, Depends(get_keys)]
