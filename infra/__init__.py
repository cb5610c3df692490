"""Starting and provisioning: nats-server, streams, the local stack.

`Stack` and `is_up` load their module on first use (PEP 562): it imports the bus (nats-py) and the
store, which the base install (the HTTP client) lacks, while StackSettings is all a client reads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .nats import NatsServer, ServerError, nats_server_binary
from .settings import StackSettings

if TYPE_CHECKING:
    from .stack import Stack, is_up

__all__ = ["NatsServer", "ServerError", "Stack", "StackSettings", "is_up", "nats_server_binary"]


def __getattr__(name: str) -> Any:
    if name not in ("Stack", "is_up"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.stack"), name)
    globals()[name] = value
    return value
