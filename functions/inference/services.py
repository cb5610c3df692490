"""What the inference routes work with (`app.state.services`), how a route gets its model and its body."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fermion.model_store import IntegrityError, StoreUnavailable
from fermion.service.auth import Principal

from .counting import Counts
from .errors import ModelUnavailable, PayloadTooLarge
from .routing import Traffic
from .runtime import LoadedModel, ModelRef, ModelRuntime
from .scheduler import Scheduler
from .settings import InferenceSettings

if TYPE_CHECKING:
    from starlette.types import Receive

    from fermion.events import Bus

LOAD_FAILURES = (ModelUnavailable, IntegrityError, StoreUnavailable)


class Disconnected(Exception):
    """The client went away before its body arrived: there is nobody to answer."""


@dataclass(frozen=True)
class Services:
    """The runtime and settings (cached getters, called per request) and the per-app parts."""

    runtime: Callable[[], ModelRuntime]
    settings: Callable[[], InferenceSettings]
    scheduler: Scheduler
    traffic: Traffic  # weighted aliases, per-version telemetry, shadow
    metrics: Counts | None = None
    preloading: threading.Thread | None = None  # FERMION_PRELOAD's load: not ready until it serves


async def model_for(services: Services, caller: Principal, ref: ModelRef, variant: str | None = None) -> LoadedModel:
    """The caller's tenant's model: the warm path does no I/O and hops no thread; a load runs off the loop."""
    models = services.runtime()
    model = models.cached(ref, variant, caller.tenant)
    if model is None:
        try:
            model = await asyncio.to_thread(models.get, ref, caller.tenant, variant)
        except LOAD_FAILURES as exc:
            if services.metrics is not None:
                services.metrics.load_failed(type(exc).__name__)
            raise
        if services.metrics is not None:
            services.metrics.loaded(model, model.load_seconds)
    return model


class AuditBus:
    """A NATS connection for audit records, made on first need (never on the request path's warm part)."""

    def __init__(self, settings: Callable[[], InferenceSettings]) -> None:
        self._settings = settings
        self._bus: Bus | None = None

    async def get(self) -> Bus:
        from fermion.events import Bus, BusUnavailable  # nats-py loads with the first audit record

        settings = self._settings()
        if settings.nats_url is None:
            raise BusUnavailable("no FERMION_NATS_URL: audit records of this function are only logged")
        if self._bus is None or not self._bus.connected:
            self._bus = await Bus.from_settings(settings, name="fermion-inference", timeout_s=3.0)
        return self._bus

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def close(self) -> None:
        """Close the connection, if one was made (at shutdown, once the records are out)."""
        if self._bus is not None:
            bus, self._bus = self._bus, None
            await bus.close()


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it is known to be over `limit` (never buffered whole)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # chunked, or more than it declared: count as it arrives
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes ({size} received so far)")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
