"""Serve the inference function: `python -m fermion.functions.inference [--host H] [--port P]`.

This is the container entry point (uvicorn on GPU nodes, Knative, ECS), and its order is the cold
start:

1. The listening socket is bound before anything is imported, so a request that arrives during
   start-up waits in the kernel's backlog and is answered as soon as the app is up, instead of
   being refused and retried by the caller.
2. The cyclic garbage collector is off while the imports run: they allocate a great many objects
   that live for the whole process, and collecting them repeatedly is wasted start-up time. After
   start-up they are moved to the permanent generation (`gc.freeze`) so later collections, on the
   warm path, never walk them; then collection is switched back on.
3. uvicorn runs without the parts a model server does not use: no WebSocket protocol (importing
   the `websockets` package alone costs tens of milliseconds), no lifespan (nothing is loaded in
   one; see `app.py`), no proxy-header rewriting (nothing reads the client's address).
4. The app serves the infer routes without a framework; FastAPI (the other routes, OpenAPI) is
   imported and built on the first request that needs it, never before the first answer.

`uvicorn fermion.functions.inference.app:app` works too; it is only slower to start.
"""

from __future__ import annotations

import gc
import socket
import sys
from argparse import ArgumentParser


def main(argv: list[str] | None = None) -> None:
    """Bind, import, serve."""
    gc.disable()
    parser = ArgumentParser(prog="python -m fermion.functions.inference", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs per request)")
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

    import uvicorn

    from fermion.service.observability import logs

    from .settings import get_settings

    # Fermion's own log lines (model loads, GPU FALLBACK) beside uvicorn's, at the same level, as JSON
    # lines; the access log (fermion.access: route template, status, request id) only when asked for.
    settings = get_settings()
    logs.configure("inference", level=args.log_level, json_lines=settings.log_format == "json")
    access = args.access_log and settings.access_log
    logging.getLogger("fermion.access").setLevel(logging.INFO if access else logging.WARNING)
    from .app import app

    config = uvicorn.Config(
        app,
        ws="none",
        lifespan="off",
        log_level=args.log_level,
        log_config=None,  # logging is ours (logs.configure): uvicorn's lines in the same JSON schema
        access_log=False,  # ours: fermion.access
        proxy_headers=False,  # nothing here reads the client's address: no X-Forwarded-* rewrite per request
        timeout_graceful_shutdown=10,
    )
    config.load()  # imports the HTTP protocol implementation now, with the collector still off
    server = uvicorn.Server(config)
    gc.freeze()
    gc.enable()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
