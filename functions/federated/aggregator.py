"""One round's updates: each checked, the first valid one per participant applied, then aggregated.

An update is applied only if it names this federation and this round, comes from a participant of
the spec, carries a signature that verifies with that participant's registered key, points at its
content address in the store, and holds weights that fit the model. The first valid update per
(federation, round, participant) is claimed create-only in the store; a replay finds the claim and
is applied once; an update for a closed round is refused as late. Nothing here waits on a
participant past the round's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from fermion.events import Bus, BusError, derive_id, subjects
from fermion.events.federation import FederationSpec, UpdateRefusal, UpdateRefused, UpdateSubmitted, update_message
from fermion.events.schemas import parse_event
from fermion.model_store.signing import BadSignature, verify

from .store import FederationStore
from .weights import BadWeights, State, fedavg, loads, trimmed_mean

log = logging.getLogger("fermion.federated")
QUORUM_GRACE = 4
"""A round short of its quorum at the deadline waits this many deadlines more before the federation fails."""


class Refused(Exception):
    """An update that is not applied; the message is the reason published with it."""


@dataclass(frozen=True)
class Applied:
    """An update the round uses: its record (the lineage entry) and its weights."""

    record: dict[str, Any]
    state: State


class RoundAggregator:
    """Collects, checks and aggregates the updates of one federation's rounds."""

    def __init__(self, bus: Bus, fstore: FederationStore, federation_id: str, tenant: str, spec: FederationSpec):
        self.bus, self.fstore, self.federation_id, self.tenant, self.spec = bus, fstore, federation_id, tenant, spec
        self.keys = {m.id: bytes.fromhex(m.public_key) for m in spec.participants}
        self.settled: set[str] = set()
        """Events of closed rounds already decided (the log is read again from the start every round)."""

    async def collect(self, r: int, like: State, deadline_s: float, since: datetime) -> dict[str, Applied]:
        """Updates for round `r`: until every participant's is in, or the deadline once the quorum is.

        Short of the quorum at the deadline, it waits on for it up to `QUORUM_GRACE` deadlines more;
        the caller fails the federation if it still is not there.
        """
        accepted = await asyncio.to_thread(self.fstore.accepted, r)
        applied = {
            p: Applied(rec, loads(self.fstore.get(rec["weights_key"]) or b"", like)) for p, rec in accepted.items()
        }
        started = time.monotonic()
        events = self.bus.watch(subjects.FEDERATED_UPDATE_SUBMITTED, since=since)
        pending: asyncio.Future[bytes] | None = None  # kept across waits: cancelling it would end the watch
        try:
            while len(applied) < len(self.keys):
                waited = time.monotonic() - started
                limit = deadline_s if len(applied) >= self.spec.min_updates else deadline_s * (1 + QUORUM_GRACE)
                if waited >= limit:
                    break
                pending = pending or asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({pending}, timeout=limit - waited)
                if not done:
                    continue  # the limit is looked at again: the quorum may have come meanwhile
                raw, pending = pending.result(), None
                await self._consider(raw, r, like, applied)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await events.aclose()
        return applied

    async def _consider(self, raw: bytes, r: int, like: State, applied: dict[str, Applied]) -> None:
        try:
            event = parse_event(raw, UpdateSubmitted)
        except ValidationError as exc:
            log.warning("federation %s: malformed update event ignored: %s", self.federation_id, exc)
            return
        assert isinstance(event, UpdateSubmitted)
        u = event.data
        if u.federation_id != self.federation_id or u.round > r or event.id in self.settled:
            return
        if u.round < r:
            self.settled.add(event.id)
        try:
            found = await asyncio.to_thread(self._check, event, r, like)
        except Refused as exc:
            await self._refuse(event, str(exc))
            return
        if found is not None and u.participant not in applied:
            applied[u.participant] = found
            log.info(
                "federation %s round %d: update from %s applied (%d examples)",
                self.federation_id,
                r,
                u.participant,
                u.n_examples,
            )

    def _check(self, event: UpdateSubmitted, r: int, like: State) -> Applied | None:
        """The update if it is applied now; None if it already was (a replay); Refused otherwise."""
        u = event.data
        key = self.keys.get(u.participant)
        if key is None:
            raise Refused(f"{u.participant!r} is not a participant of federation {self.federation_id}")
        message = update_message(u.federation_id, u.round, u.participant, u.weights_sha256, u.n_examples, u.metrics)
        try:
            verify(key, message, bytes.fromhex(u.signature))
        except BadSignature as exc:
            raise Refused(f"the signature does not verify with {u.participant}'s registered key") from exc
        if u.round < r:
            done = self.fstore.accepted(u.round).get(u.participant)
            if done is not None and done["weights_sha256"] == u.weights_sha256:
                return None  # applied in its own round; this is the log replayed
            raise Refused(f"late: round {u.round} closed before this update was applied")
        if u.weights_key != self.fstore.update_key(r, u.participant, u.weights_sha256):
            raise Refused("weights_key is not the update's content address in this federation's round")
        data = self.fstore.get(u.weights_key)
        if data is None or hashlib.sha256(data).hexdigest() != u.weights_sha256:
            raise Refused("the update's weights are missing from the store or do not match their sha256")
        try:
            state = loads(data, like)
        except BadWeights as exc:
            raise Refused(f"the update's weights do not fit the model: {exc}") from exc
        record = {
            "participant": u.participant,
            "event_id": event.id,
            "weights_key": u.weights_key,
            "weights_sha256": u.weights_sha256,
            "n_examples": u.n_examples,
            "metrics": u.metrics,
            "signature": u.signature,
        }
        held = self.fstore.accept(r, u.participant, record)
        if held["weights_sha256"] != u.weights_sha256:
            raise Refused(f"{u.participant} already has an applied update in round {r}; one per round")
        return Applied(held, state)

    async def _refuse(self, event: UpdateSubmitted, reason: str) -> None:
        u = event.data
        log.warning(
            "federation %s round %d: update %s from %s refused: %s",
            self.federation_id,
            u.round,
            event.id,
            u.participant,
            reason,
        )
        with contextlib.suppress(BusError):
            await self.bus.publish(
                UpdateRefused(
                    id=derive_id(event.id, "refused"),
                    tenant=self.tenant,
                    data=UpdateRefusal(
                        federation_id=u.federation_id, round=u.round, participant=u.participant, reason=reason
                    ),
                )
            )

    def aggregate(self, applied: dict[str, Applied]) -> State:
        """FedAvg weighted by examples, or the coordinate-wise trimmed mean."""
        ordered = [applied[p] for p in sorted(applied)]
        if self.spec.aggregation == "trimmed_mean":
            return trimmed_mean([a.state for a in ordered], self.spec.trim_fraction)
        return fedavg((a.state, int(a.record["n_examples"])) for a in ordered)
