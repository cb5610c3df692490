"""The HTTP servers the entry point runs the app on (uvicorn or granian), and its worker processes.

Both serve a socket `__main__` bound before anything was imported. Several workers are forked
from one parent right after that bind and before the app is imported, so each worker imports the
app, loads its models (into the one on-disk cache under FERMION_HOME) and starts its preload thread
itself: no thread or ONNX Runtime session is ever copied across a fork. The kernel spreads
connections over the workers, which all accept on the one listening socket.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

SERVERS = ("uvicorn", "granian")
GRACE_S = 10  # in-flight requests finish within this after SIGTERM (uvicorn's timeout_graceful_shutdown too)
BACKLOG = 2048
# Requests handed to Python at once under granian; beyond it connections wait in granian's Rust queue,
# not in Python's memory. Many times max_batch_size, so the batcher still fills its batches.
BACKPRESSURE = 1024

log = logging.getLogger("fermion.inference")


def check_available(server: str) -> None:
    """Exit with a message (not a traceback) when the server asked for is not installed."""
    if server == "granian" and importlib.util.find_spec("granian") is None:
        sys.exit("--server granian needs the granian package: pip install 'fermion[granian]'")


def fork_workers(count: int) -> None:
    """Fork `count` workers; returns in each worker, while the parent supervises them and exits.

    The parent forwards SIGTERM and SIGINT to the workers and exits once they have all ended; a
    worker that ends on its own stops the others (the orchestrator restarts the whole unit)."""
    workers: set[int] = set()
    parent = os.getpid()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            _end_with_parent(parent)
            return
        workers.add(pid)
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while workers:
        pid, status = os.wait()  # a forwarded signal interrupts it; PEP 475 retries the wait
        workers.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("inference worker %d ended (exit code %d): stopping the others", pid, exit_code)
            code = exit_code if exit_code > 0 else 1  # killed by a signal: still a failure
            forward(signal.SIGTERM, None)
    sys.exit(code)


def _end_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when its parent dies (killed, it forwards nothing)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)


class App(Protocol):
    """What the servers run: an ASGI app that closes what it holds open once they have stopped."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def aclose(self) -> None: ...


def run_uvicorn(app: App, sock: socket.socket, log_level: str, ready: Callable[[], None]) -> None:
    """Serve `app` on `sock` with uvicorn: no WebSockets, no lifespan, no proxy-header rewriting, and
    each response's head and body in one write (`coalescing.py`)."""
    import uvicorn

    try:
        from .coalescing import OneWriteProtocol

        http: Any = OneWriteProtocol  # each response in one write (one system call), not two
    except ImportError:  # no httptools (uvicorn without its `standard` extra): its h11 protocol
        http = "auto"
    config = uvicorn.Config(
        app,
        http=http,
        ws="none",
        lifespan="off",
        log_level=log_level,
        log_config=None,  # logging is ours (logs.configure): uvicorn's lines in the same JSON schema
        access_log=False,  # ours: fermion.access
        proxy_headers=False,  # nothing here reads the client's address: no X-Forwarded-* rewrite per request
        timeout_graceful_shutdown=GRACE_S,
    )
    config.load()  # imports the HTTP protocol implementation now, with the collector still off

    class Closing(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)  # the requests in flight are answered
            await app.aclose()  # before the stop signal is raised again, with its default action

    server = Closing(config)
    ready()
    server.run(sockets=[sock])


def run_granian(app: App, sock: socket.socket, log_level: str, ready: Callable[[], None]) -> None:
    """Serve `app` on `sock` with granian's embedded server on this process's event loop (uvloop if installed)."""
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    server = _granian_server(app, sock, log_level)
    ready()
    try:
        loop.run_until_complete(_serve_granian(server, loop))
    finally:
        try:
            loop.run_until_complete(app.aclose())  # however serving ended
        finally:
            loop.close()


def _granian_server(app: App, sock: socket.socket, log_level: str) -> Any:
    """granian's embedded ASGI server over the pre-bound `sock`, its logs through Fermion's handlers."""
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.net import SocketHolder
    from granian.server.embed import Server

    class Bound(Server):
        def _init_shared_socket(self) -> None:
            # The socket __main__ bound before the imports, not a new one: early requests wait in its backlog.
            holder: Any = SocketHolder  # built from an fd as granian's own unpickling does; its stub omits __new__
            self._ssp, self._shd = None, holder(sock.fileno(), False, BACKLOG)

    granian_log = logging.getLogger("_granian")  # the name its Rust and Python parts log under
    # Said on every start; true of the embedded API, nothing an operator can act on.
    granian_log.addFilter(lambda record: record.getMessage() != "Embedded server is experimental!")
    host, port = sock.getsockname()[:2]
    return Bound(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,  # no lifespan: nothing is loaded in one (app.py)
        http=HTTPModes.http1,  # what uvicorn speaks: no per-connection HTTP/2 detection
        websockets=False,
        runtime_threads=1,  # one Tokio thread does the I/O; Python runs on the loop's thread
        backlog=BACKLOG,
        backpressure=BACKPRESSURE,
        log_level=LogLevels(log_level),
        # Incremental: only propagate granian's loggers to the root (Fermion's handler, JSON lines),
        # instead of granian's dictConfig replacing the handlers logs.configure set up.
        log_dictconfig={
            "incremental": True,
            "handlers": {},
            "formatters": {},
            "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
        },
        log_access=False,  # ours: fermion.access
    )


async def _serve_granian(server: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Run until SIGTERM or SIGINT, then let in-flight requests finish for up to GRACE_S."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    serving = asyncio.ensure_future(server.serve())
    stopped = asyncio.ensure_future(server.main_loop_interrupt.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    try:
        await asyncio.wait_for(serving, GRACE_S)
    except TimeoutError:
        log.warning("requests still running %ds after the stop signal: exiting anyway", GRACE_S)
    finally:
        stopped.cancel()
