"""A federation as a user asks for one over HTTP, and the request event it became."""

from __future__ import annotations

from fermion.events import Bus, streams, subjects
from fermion.events.federation import FederationRequested
from fermion.events.schemas import parse_event
from fermion.model_store.signing import SigningKey


def federation_body(holdout: dict[str, str], min_updates: int = 2) -> dict[str, object]:
    """`POST /v1/federations`'s body: three fresh participants, digits-shaped, three rounds."""
    keys = [SigningKey.generate().public_key.hex() for _ in range(3)]
    return {
        "model_name": "fed-start",
        "labels": [str(i) for i in range(10)],
        "n_features": 64,
        "rounds": 3,
        "participants": [{"id": f"site-{i}", "public_key": k} for i, k in enumerate(keys)],
        "min_updates": min_updates,
        "holdout": holdout,
    }


async def requested(bus: Bus, federation_id: str) -> FederationRequested:
    """The queued `federated.requested` event with this id (AssertionError if there is none)."""
    for m in reversed(await bus.queued_jobs()):
        if m.subject == subjects.FEDERATED_REQUESTED:
            event = parse_event(m.data, FederationRequested)
            if event.id == federation_id:
                assert isinstance(event, FederationRequested)
                return event
    raise AssertionError(f"no federated.requested {federation_id} in {streams.JOBS_STREAM}")
