"""Once per event: the create-only record that makes one training event exactly one version.

A training event can reach the trainers any number of times (redelivery, a second publish without
`Nats-Msg-Id`, two trainers at once, a trainer killed mid-registration). What keeps it to one
version is a record in the store, keyed by (tenant, model, event id) and written create-only::

    models/{tenant}/{name}/events/{sha256(event id)}.json    {"event_id": ..., "manifest": {...}}

The record is taken after a writer has stored every file of the version it claimed and before it
writes that version's manifest, and it holds the whole manifest. So the claim is the commit point:

- the writer that creates it owns the event; every other writer's version stays invisible (no
  manifest) and its files are removed, but for the model file that holds its number (numbers are
  never reused, so versions appear in order);
- a writer killed after the claim and before the manifest leaves nothing half-done: whoever reads
  the claim next (a redelivery, a concurrent trainer) writes the manifest from it, create-only.

Nothing here is a lease: no claim ever has to expire, because a claim is only ever taken for a
version whose files are complete.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ValidationError

from .backends import ObjectStore
from .errors import IntegrityError, ObjectNotFound, PreconditionFailed
from .manifest import Manifest


class EventClaim(BaseModel):
    """The event that became a version, and that version's manifest."""

    event_id: str
    manifest: Manifest


class EventClaims:
    """Create-only claims of (tenant, model, event id) → version, on an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def key(model_prefix: str, event_id: str) -> str:
        """Where the claim for `event_id` lives under a model's prefix (`models/{tenant}/{name}/`)."""
        # Event ids are the caller's strings; a digest keeps any of them a safe key segment.
        return f"{model_prefix}events/{hashlib.sha256(event_id.encode()).hexdigest()}.json"

    def get(self, model_prefix: str, event_id: str) -> Manifest | None:
        """The manifest the event became, or None if no writer has claimed it."""
        try:
            raw, _ = self.store.get(self.key(model_prefix, event_id))
        except ObjectNotFound:
            return None
        try:
            claim = EventClaim.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"the claim of event {event_id!r} under {model_prefix} is unreadable: {exc}") from exc
        if claim.event_id != event_id:
            raise IntegrityError(f"the claim of event {event_id!r} under {model_prefix} names {claim.event_id!r}")
        return claim.manifest

    def take(self, model_prefix: str, event_id: str, manifest: Manifest) -> Manifest:
        """Claim `event_id` for `manifest`'s version; returns the manifest that holds the claim.

        That is `manifest` if this writer won, or the earlier writer's if it lost.
        """
        body = EventClaim(event_id=event_id, manifest=manifest).model_dump_json(indent=2).encode()
        try:
            self.store.put(self.key(model_prefix, event_id), body, if_none_match=True)
        except PreconditionFailed:
            winner = self.get(model_prefix, event_id)
            if winner is None:  # a claim is never removed, so this cannot be; say so rather than guess
                raise IntegrityError(f"the claim of event {event_id!r} vanished under {model_prefix}") from None
            return winner
        return manifest
