"""Serve the inference function: `python -m fermion.functions.inference [--host H] [--port P]`.

This is the container entry point (GPU nodes, Knative, ECS): uvicorn, or granian with `--server
granian` (FERMION_SERVER; the `granian` extra), in one process or `--workers N` (FERMION_WORKERS)
on the one port (`servers.py`). Its order is the cold start:

1. The listening socket is bound before anything is imported, so a request that arrives during
   start-up waits in the kernel's backlog and is answered as soon as the app is up, instead of
   being refused and retried by the caller.
2. The cyclic garbage collector is off while the imports run: they allocate a great many objects
   that live for the whole process, and collecting them repeatedly is wasted start-up time. After
   start-up they are moved to the permanent generation (`gc.freeze`) so later collections, on the
   warm path, never walk them; then collection is switched back on. Nor does pydantic search every
   installed distribution for its plugins (`skip_pydantic_plugin_scan`).
3. With several workers, they are forked from this process once the socket is bound and the
   settings read, before the app is imported: each worker imports the app, loads its models and
   runs its own server (steps 2, 4 and 5 happen in every worker), and all accept on the one socket.
4. The server runs without the parts a model server does not use: no WebSocket protocol (importing
   the `websockets` package alone costs tens of milliseconds), no lifespan (nothing is loaded in
   one; see `app.py`), no proxy-header rewriting (nothing reads the client's address); granian
   speaks HTTP/1 only, on this process's event loop, over the socket bound in step 1.
5. The app serves the infer routes without a framework; FastAPI (the other routes, OpenAPI) is
   imported and built on the first request that needs it, never before the first answer.

`uvicorn fermion.functions.inference.app:app` works too; it is only slower to start.
"""

from __future__ import annotations

import gc
import socket
import sys
from argparse import ArgumentParser, ArgumentTypeError

from . import skip_pydantic_plugin_scan


def main(argv: list[str] | None = None) -> None:
    """Bind, import, serve."""
    gc.disable()
    skip_pydantic_plugin_scan()
    parser = ArgumentParser(prog="python -m fermion.functions.inference", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs per request)")
    parser.add_argument("--server", choices=["uvicorn", "granian"], help="default: FERMION_SERVER, else uvicorn")
    parser.add_argument("--workers", type=_positive, help="processes on the one port (default: FERMION_WORKERS, 1)")
    args = parser.parse_args(argv)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sys.exit(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    sock.listen(2048)

    import logging

    from fermion.service.observability import logs

    from .servers import check_available, fork_workers
    from .settings import get_settings

    # Fermion's own log lines (model loads, GPU FALLBACK) beside the server's, at the same level, as
    # JSON lines; the access log (fermion.access: route template, status, request id) only when asked for.
    settings = get_settings()
    logs.configure("inference", level=args.log_level, json_lines=settings.log_format == "json")
    server, workers = args.server or settings.server, args.workers or settings.workers
    check_available(server)
    if workers > 1:
        fork_workers(workers)  # returns in each worker; the parent only supervises them
    access = args.access_log and settings.access_log
    logging.getLogger("fermion.access").setLevel(logging.INFO if access else logging.WARNING)
    from .app import app
    from .servers import run_granian, run_uvicorn

    run = run_granian if server == "granian" else run_uvicorn
    run(app, sock, args.log_level, ready=_collect_from_now_on)


def _positive(text: str) -> int:
    """A count of at least 1, for argparse."""
    if not text.isdigit() or int(text) < 1:
        raise ArgumentTypeError(f"not a count of at least 1: {text!r}")
    return int(text)


def _collect_from_now_on() -> None:
    """Move everything start-up allocated to the permanent generation, then switch the collector on."""
    gc.freeze()
    gc.enable()


if __name__ == "__main__":
    main()
