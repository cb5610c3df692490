"""Idempotency keys: a client's retry of one logical write is the same event, never a second one.

A write route (`POST /v1/trainings`, `/v1/sweeps`; an upload is content-addressed already) takes an
optional `Idempotency-Key` header. The event id derives from it, scoped by tenant and route, so a
retry after a timeout, a 503 or a 504 publishes the same id again: JetStream de-duplicates it
within its window, and after that the trainers' claim in the registry (model_store/claims.py)
still makes it one version. Without a key every request is a new event.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Header

from fermion.events.envelope import new_id

HEADER = "Idempotency-Key"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="one per logical operation, reused on every retry of it (printable ASCII, 1-255 characters): "
        "the same key returns the same job instead of starting another",
    ),
]


def event_id(tenant: str, route: str, key: str | None) -> str:
    """The id of the event a request makes: derived from its key (the same on every retry), else fresh."""
    if key is None:
        return new_id()
    return "k" + hashlib.sha256(f"{tenant}\0{route}\0{key}".encode()).hexdigest()[:31]  # 32, as a fresh one
