"""Giving memory back after large requests: glibc keeps the heap pages they freed unless asked.

A request near the body limit parses into millions of Python floats and numpy copies; once it is
answered they are freed, but glibc's allocator keeps the pages (fragmented arenas, per-thread
heaps), so an idle process stays tens of MiB larger than before it (bench/memory.py). `malloc_trim`
returns the free pages to the system. It runs in a worker thread, at most once per `delay_s`, a
moment after the last large request (so a burst trims once), and never on a small request's path.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("fermion.inference")
LARGE_BODY = 1 << 20  # bytes: a request this large is followed by a trim


def _malloc_trim() -> Callable[[], object] | None:
    import ctypes  # on the first large request, not on the cold start

    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname (find_library would spawn ldconfig)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to ask
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Trimmer:
    """Schedules one `malloc_trim` a moment after large requests (debounced)."""

    def __init__(self, delay_s: float = 0.2) -> None:
        self._trim: Callable[[], object] | bool | None = False  # False: not looked up yet
        self._delay_s = delay_s
        self._scheduled: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    def after(self, body_bytes: int) -> None:
        """Note an answered request of `body_bytes`; a large one schedules a trim (once per burst)."""
        if body_bytes < LARGE_BODY:
            return
        if self._trim is False:
            self._trim = _malloc_trim()
        if self._trim is None:
            return
        loop = asyncio.get_running_loop()
        if self._scheduled is not None:
            self._scheduled.cancel()  # the burst goes on: trim after its last request
        self._scheduled = loop.call_later(self._delay_s, self._start)

    def _start(self) -> None:
        self._scheduled = None
        assert callable(self._trim)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._trim))
        self._tasks.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._tasks.discard)
