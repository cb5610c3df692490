"""The bus's errors (nats-py's are translated into these where they are raised: bus.py, deliveries.py).

Errors::

    BusError
    ├── BusUnavailable      the server cannot be reached; for a publish: nothing was sent
    ├── PublishUnconfirmed  a publish went out but no acknowledgement came back: it may be stored
    └── PublishRejected     the server refused a publish (no stream for the subject, ...)
"""

from __future__ import annotations


class BusError(Exception):
    """Base of every bus error."""


class BusUnavailable(BusError):
    """The NATS server could not be reached in time."""


class PublishUnconfirmed(BusError):
    """A publish was sent but not acknowledged in time: JetStream may or may not have stored it.

    Only publishing the same message id again (de-duplicated by JetStream) settles it.
    """


class PublishRejected(BusError):
    """The server refused a publish (for example, no stream holds the subject)."""
