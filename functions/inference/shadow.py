"""Shadow traffic: a mirrored copy of an alias's requests answered by another version, never returned.

The request path only offers the request to a bounded queue (`put_nowait`; full: the copy is
dropped and counted). One task per app takes copies off the queue after the primary's response
has gone, runs the shadow version in a worker thread, and records agreement (same arg-max class
per row, or the same values within a tolerance for non-class outputs) and both latencies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from fermion.model_store import RegistryError

from .errors import InferenceError
from .runtime import ModelRef, ModelRuntime
from .telemetry import Telemetry

if TYPE_CHECKING:
    from .routing import Route
    from .runtime import LoadedModel

log = logging.getLogger("fermion.inference")
Copy = tuple[tuple[str, str, str, int, int], str, dict[str, np.ndarray], dict[str, np.ndarray], float]


class Mirror:
    """Runs shadow copies off the request path, one at a time."""

    def __init__(self, runtime: Callable[[], ModelRuntime], telemetry: Telemetry, capacity: int = 64) -> None:
        self._runtime = runtime
        self._telemetry = telemetry
        self._capacity = capacity
        self._queue: asyncio.Queue[Copy] | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.done = 0

    def submit(
        self,
        route: Route,
        model: LoadedModel,
        feeds: dict[str, np.ndarray],
        results: dict[str, np.ndarray],
        primary_s: float,
    ) -> None:
        """Offer a copy of an answered request to the shadow (dropped, and counted, when the queue is full)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._capacity)
            self._task = asyncio.get_running_loop().create_task(self._work())
        assert route.alias is not None and route.shadow is not None
        key = (route.tenant, model.name, route.alias, model.version, route.shadow)
        try:
            self._queue.put_nowait((key, model.variant, feeds, results, primary_s))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            key, variant, feeds, results, primary_s = await self._queue.get()
            try:
                shadow_s, agreed = await self._compare(key, variant, feeds, results)
            except (InferenceError, RegistryError) as exc:
                log.warning("shadow version %d of %s failed: %s", key[4], key[1], exc)
                shadow_s, agreed = None, False
            self._telemetry.shadowed(key, primary_s, shadow_s, agreed)
            self.done += 1

    async def _compare(
        self,
        key: tuple[str, str, str, int, int],
        variant: str,
        feeds: dict[str, np.ndarray],
        primary: dict[str, np.ndarray],
    ) -> tuple[float, bool]:
        tenant, name, _, _, version = key
        runtime, ref = self._runtime(), ModelRef(name, None, version)
        model = runtime.cached(ref, variant)
        if model is None:
            model = await asyncio.to_thread(runtime.get, ref, tenant, variant)
        started = time.perf_counter()
        out = await asyncio.to_thread(model.run, feeds, list(primary))
        seconds = time.perf_counter() - started
        return seconds, all(_agree(primary[k], out[k]) for k in primary)


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.ndim == 2 and a.shape[1] > 1:
        return bool(np.array_equal(a.argmax(axis=1), b.argmax(axis=1)))
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4))
