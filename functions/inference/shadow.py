"""Shadow traffic: a mirrored copy of an alias's requests answered by another version, never returned.

The request path only offers the request to a bounded queue (a thread-safe `put`, no event-loop
wake-up; full: the copy is dropped and counted). One thread per app, at the lowest CPU priority
(`nice` 19, inherited by the ONNX Runtime threads of a shadow session it loads), takes copies off
the queue, runs the shadow version and records agreement (same arg-max class per row, or the same
values within a tolerance for non-class outputs) and both latencies. It never touches the event
loop, so a primary request is never queued behind a shadow's completion; on a busy machine the
scheduler gives the primary the CPU first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from fermion.model_store import RegistryError

from .errors import InferenceError
from .runtime import ModelRef, ModelRuntime
from .traffic import Routed, Telemetry

if TYPE_CHECKING:
    from .runtime import LoadedModel

log = logging.getLogger("fermion.inference")
Key = tuple[str, str, str, int, int]  # tenant, model, alias, primary version, shadow version
Copy = tuple[Key, str, dict[str, np.ndarray], dict[str, np.ndarray], float]
SHADOW_NICE = 19


class Mirror:
    """Runs shadow copies off the request path, one at a time, in a low-priority thread."""

    def __init__(self, runtime: Callable[[], ModelRuntime], telemetry: Telemetry, capacity: int = 64) -> None:
        self._runtime = runtime
        self._telemetry = telemetry
        self._capacity = capacity
        self._queue: queue.SimpleQueue[Copy] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.dropped = 0
        self.done = 0

    def submit(
        self,
        route: Routed,
        model: LoadedModel,
        feeds: dict[str, np.ndarray],
        results: dict[str, np.ndarray],
        primary_s: float,
    ) -> None:
        """Offer a copy of an answered request to the shadow (dropped, and counted, when the queue is full)."""
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name="fermion-shadow", daemon=True)
                    self._thread.start()
        if self._queue.qsize() >= self._capacity:
            self.dropped += 1
            return
        assert route.alias is not None and route.shadow is not None
        key = (route.tenant, model.name, route.alias, model.version, route.shadow)
        self._queue.put((key, model.variant, feeds, results, primary_s))

    def _work(self) -> None:
        with contextlib.suppress(
            OSError, AttributeError
        ):  # per-thread nice: Linux; elsewhere it runs at normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
        while True:
            key, variant, feeds, results, primary_s = self._queue.get()
            try:
                shadow_s, agreed = self._compare(key, variant, feeds, results)
            except (InferenceError, RegistryError) as exc:
                log.warning("shadow version %d of %s failed: %s", key[4], key[1], exc)
                shadow_s, agreed = None, False
            self._telemetry.shadowed(key, primary_s, shadow_s, agreed)
            self.done += 1

    def _compare(
        self, key: Key, variant: str, feeds: dict[str, np.ndarray], primary: dict[str, np.ndarray]
    ) -> tuple[float, bool]:
        tenant, name, _, _, version = key
        runtime, ref = self._runtime(), ModelRef(name, None, version)
        model = runtime.cached(ref, variant, tenant) or runtime.get(ref, tenant, variant)
        started = time.perf_counter()
        out = model.run(feeds, list(primary))
        seconds = time.perf_counter() - started
        return seconds, all(_agree(primary[k], out[k]) for k in primary)


def _agree(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.ndim == 2 and a.shape[1] > 1:
        return bool(np.array_equal(a.argmax(axis=1), b.argmax(axis=1)))
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4))
