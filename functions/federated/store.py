"""A federation's files in the object store, all written create-only::

    federated/{tenant}/{federation}/rounds/{r}/global.npz                       the round's starting weights
    federated/{tenant}/{federation}/rounds/{r}/updates/{participant}/{sha}.npz   an update, by content
    federated/{tenant}/{federation}/rounds/{r}/accepted/{participant}.json      the one update applied
    federated/{tenant}/{federation}/rounds/{r}/result.json                      the round's version, metrics

Create-only makes every write idempotent: a retry finds the object and, if it differs, the first
writer wins. Updates are content-addressed, so nobody can take a participant's place by writing first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from fermion.model_store import ObjectNotFound, ObjectStore, PreconditionFailed, check_name


class FederationStore:
    """Reads and create-only writes of one tenant's federations."""

    def __init__(self, store: ObjectStore, tenant: str, federation_id: str) -> None:
        self.store = store
        self.prefix = f"federated/{check_name('tenant', tenant)}/{check_name('federation', federation_id)}/rounds/"

    def round(self, r: int) -> str:
        """The prefix of round `r`."""
        return f"{self.prefix}{r}/"

    def global_key(self, r: int) -> str:
        """Where round `r`'s starting weights are."""
        return f"{self.round(r)}global.npz"

    def update_key(self, r: int, participant: str, sha256: str) -> str:
        """Where a participant's update for round `r` is, by its content."""
        return f"{self.round(r)}updates/{check_name('participant', participant)}/{sha256}.npz"

    def put_once(self, key: str, data: bytes) -> bytes:
        """Write `data` create-only; the bytes now at `key` (another writer's, if it got there first)."""
        try:
            self.store.put(key, data, if_none_match=True)
        except PreconditionFailed:
            return self.store.get(key)[0]
        return data

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        try:
            return self.store.get(key)[0]
        except ObjectNotFound:
            return None

    def put_global(self, r: int, data: bytes) -> tuple[bytes, str]:
        """Round `r`'s starting weights (the first written wins) and their sha256."""
        stored = self.put_once(self.global_key(r), data)
        return stored, hashlib.sha256(stored).hexdigest()

    def accept(self, r: int, participant: str, record: dict[str, Any]) -> dict[str, Any]:
        """Claim `participant`'s one applied update for round `r`; the record that holds the claim."""
        key = f"{self.round(r)}accepted/{check_name('participant', participant)}.json"
        return dict(json.loads(self.put_once(key, json.dumps(record, sort_keys=True).encode())))

    def accepted(self, r: int) -> dict[str, dict[str, Any]]:
        """Every update applied in round `r`, by participant."""
        out = {}
        for name in self.store.children(f"{self.round(r)}accepted/"):
            with contextlib.suppress(ObjectNotFound):
                out[name.removesuffix(".json")] = json.loads(self.store.get(f"{self.round(r)}accepted/{name}")[0])
        return out

    def result(self, r: int) -> dict[str, Any] | None:
        """Round `r`'s result, if it closed."""
        raw = self.get(f"{self.round(r)}result.json")
        return None if raw is None else dict(json.loads(raw))

    def put_result(self, r: int, result: dict[str, Any]) -> dict[str, Any]:
        """Record round `r`'s result (the first written wins)."""
        return dict(
            json.loads(self.put_once(f"{self.round(r)}result.json", json.dumps(result, sort_keys=True).encode()))
        )
