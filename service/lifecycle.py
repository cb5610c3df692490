"""How a long-running function process stops: on SIGINT or SIGTERM, its current work finished first."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """`stop` (a new event if None), set by SIGINT and SIGTERM where the running loop can take handlers."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            loop.add_signal_handler(sig, stop.set)
    return stop
