"""Readiness: can this function serve right now? Its dependencies, probed, in a route and a gauge.

Each check is a coroutine that raises one of the errors its function names when the dependency is
down; results are kept for `ttl_s` so probes and scrapes cost at most one check per interval.
Nothing is latched: when the dependency returns, the next probe says so (the bus reconnects by
itself, the store is asked again).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from fermion.model_store import ObjectNotFound, ObjectStore

if TYPE_CHECKING:  # prometheus-client loads with the first metrics built (inference: after its first answer)
    from prometheus_client import CollectorRegistry, Gauge

Check = Callable[[], Awaitable[None]]
_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


def _gauge(registry: CollectorRegistry) -> Gauge:
    from prometheus_client import Gauge

    gauge = _GAUGES.get(registry)
    if gauge is None:
        gauge = _GAUGES[registry] = Gauge(
            "fermion_dependency_up",
            "1 when the function's last check of a dependency (store, nats) succeeded.",
            ["function", "dependency"],
            registry=registry,
        )
    return gauge


class Readiness:
    """A function's dependency checks, their last results, and the `fermion_dependency_up` gauge."""

    def __init__(
        self,
        function: str,
        checks: Mapping[str, Check],
        errors: tuple[type[Exception], ...],
        registry: CollectorRegistry | None = None,
        *,
        ttl_s: float = 2.0,
        timeout_s: float = 3.0,
    ) -> None:
        self.function = function
        self._checks = dict(checks)
        self._errors = errors
        self._gauge = _gauge(registry) if registry is not None else None
        self._ttl_s, self._timeout_s = ttl_s, timeout_s
        self._last: tuple[float, dict[str, str | None]] | None = None

    async def problems(self) -> dict[str, str]:
        """The dependencies that are down, with why (empty: ready)."""
        now = time.monotonic()
        if self._last is None or now - self._last[0] >= self._ttl_s:
            results = dict(zip(self._checks, await asyncio.gather(*map(self._one, self._checks)), strict=True))
            self._last = (now, results)
        return {name: why for name, why in self._last[1].items() if why is not None}

    async def _one(self, name: str) -> str | None:
        try:
            await asyncio.wait_for(self._checks[name](), self._timeout_s)
            why = None
        except TimeoutError:
            why = f"no answer within {self._timeout_s:.0f}s"
        except self._errors as exc:
            why = str(exc) or type(exc).__name__
        if self._gauge is not None:
            self._gauge.labels(self.function, name).set(0 if why else 1)
        return why


def store_check(store: Callable[[], ObjectStore]) -> Check:
    """A check that the object store answers: reading an absent key is an answer (ObjectNotFound)."""

    def probe() -> None:
        with contextlib.suppress(ObjectNotFound):
            store().get("health/probe")

    async def check() -> None:
        await asyncio.to_thread(probe)

    return check
