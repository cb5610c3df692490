"""Why a federation stopped::

    FederationError          the federation cannot go on: federated.failed, then dead-letter
    └── NoQuorum             a round's deadline passed with fewer valid updates than min_updates

Anything else the coordinator raises is taken as transient: the federation message is nak'ed and
the next delivery resumes from the last completed round (its state is in the store).
"""


class FederationError(Exception):
    """Retrying cannot help: the spec, the held-out set or the participants make the federation fail."""


class NoQuorum(FederationError):
    """Too few valid updates arrived before a round's deadline."""
