"""Starting and provisioning: nats-server, streams, the local stack."""

from .nats import NatsServer, ServerError, nats_server_binary
from .settings import StackSettings
from .stack import Stack, is_up

__all__ = ["NatsServer", "ServerError", "Stack", "StackSettings", "is_up", "nats_server_binary"]
