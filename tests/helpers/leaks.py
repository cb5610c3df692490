"""What a test can leave open that the garbage collector cannot find: named by tests/conftest.py."""

from __future__ import annotations

import sys
import weakref

_named_buses: weakref.WeakSet[object] = weakref.WeakSet()  # by object: an id may be reused


def stranded_ingest_bus() -> str | None:
    """Ingest's process-wide NATS connection, if a test left it open on an event loop that has closed.

    Only an app served without its lifespan leaves one (the lifespan closes it). Held by the module,
    the collector cannot find it until a later test's app replaces it: that test would be named
    (test_readiness.py was, for three waves), so the one that left it is named here, once.
    """
    deps = sys.modules.get("fermion.functions.ingest.deps")
    holder = getattr(deps, "_BusHolder", None)
    bus, loop = (holder.bus, holder.loop) if holder is not None else (None, None)
    if bus is None or loop is None or not loop.is_closed() or bus in _named_buses:
        return None
    _named_buses.add(bus)
    return "ingest's NATS connection, left open on a closed event loop (serve the app with its lifespan)"
