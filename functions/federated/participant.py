"""A federation participant: trains where its data is, and shares only weights, never rows.

`python -m fermion.functions.federated.participant` with FERMION_PARTICIPANT_ID, _KEY and _DATA.
It follows `federated.round.started`; for each open round that names it, it fetches the global
weights (checked against their sha256), trains on its own local file for the recipe's epochs
(with FedProx's proximal term, and clipping + Gaussian noise when the federation asks for
privacy), writes the weights create-only under their content address and publishes the update,
signed with its own Ed25519 key. A restarted participant catches up on the open round; a round
that closed, or already has its update, is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from fermion.events import Bus, derive_id, subjects
from fermion.events.federation import RoundAnnouncement, RoundStarted, UpdateReport, UpdateSubmitted, update_message
from fermion.events.schemas import parse_event
from fermion.model_store import ObjectStore, open_store
from fermion.model_store.signing import SigningKey
from fermion.service.lifecycle import stop_on_signals

from .data import load_labelled
from .errors import FederationError
from .model import build_module, load_state, local_train, state_of, trainable
from .settings import ParticipantSettings
from .store import FederationStore
from .weights import BadWeights, dumps, loads, privatize

log = logging.getLogger("fermion.federated.participant")


class Participant:
    """One participant's worker: local data in, signed weight updates out."""

    def __init__(self, bus: Bus, store: ObjectStore, settings: ParticipantSettings, key: SigningKey) -> None:
        self.bus, self.store, self.settings, self.key = bus, store, settings, key
        self.id = settings.participant_id

    async def run(self, stop: asyncio.Event) -> None:
        """Follow round announcements until `stop` is set."""
        since = datetime.now(UTC) - timedelta(seconds=self.settings.lookback_s)
        events = self.bus.watch(subjects.FEDERATED_ROUND_STARTED, since=since)
        work = asyncio.create_task(self._follow(events))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                work.result()  # an error in the loop ends the process with it
        finally:
            for task in (work, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow(self, events: AsyncGenerator[bytes, None]) -> None:
        log.info("participant %s following %s", self.id, subjects.FEDERATED_ROUND_STARTED)
        async for raw in events:
            try:
                event = parse_event(raw, RoundStarted)
            except ValidationError as exc:
                log.warning("malformed round announcement ignored: %s", exc)
                continue
            assert isinstance(event, RoundStarted)
            if self.id not in event.data.participants:
                continue
            try:
                update = await asyncio.to_thread(self.train_round, event)
            except (FederationError, BadWeights) as exc:
                log.error("federation %s round %d: %s", event.data.federation_id, event.data.round, exc)
                continue
            if update is not None:
                await self.bus.publish(update)
                log.info("federation %s round %d: update published", event.data.federation_id, event.data.round)

    def train_round(self, event: RoundStarted) -> UpdateSubmitted | None:
        """Train on local data from the round's global weights; the signed update, or None if not needed."""
        a: RoundAnnouncement = event.data
        fstore = FederationStore(self.store, event.tenant, a.federation_id)
        if fstore.result(a.round) is not None or self.id in fstore.accepted(a.round):
            return None  # closed, or ours is already applied
        if a.weights_key != fstore.global_key(a.round):
            raise FederationError(f"the announced weights {a.weights_key!r} are not round {a.round}'s global weights")
        data = fstore.get(a.weights_key)
        if data is None or hashlib.sha256(data).hexdigest() != a.weights_sha256:
            raise FederationError("the global weights are missing or do not match their sha256")
        x, y = load_labelled(self.settings.participant_data, a.labels, a.n_features)
        module = build_module(a.recipe, x, len(a.labels))
        global_state = loads(data, state_of(module))
        load_state(module, global_state)
        metrics = local_train(module, x, y, a.recipe, proximal_mu=a.proximal_mu, seed=a.recipe.seed + a.round)
        state = state_of(module)
        if a.privacy is not None:
            state, norm = privatize(
                state,
                global_state,
                trainable(module),
                a.privacy.clip_norm,
                a.privacy.noise_multiplier,
                seed=None,  # fresh entropy: noise anyone could regenerate would protect nothing
            )
            metrics["update_norm"] = norm
        payload = dumps(state)
        sha = hashlib.sha256(payload).hexdigest()
        key = fstore.update_key(a.round, self.id, sha)
        fstore.put_once(key, payload)
        message = update_message(a.federation_id, a.round, self.id, sha, len(x), metrics)
        return UpdateSubmitted(
            id=derive_id(a.federation_id, a.round, self.id),
            tenant=event.tenant,
            data=UpdateReport(
                federation_id=a.federation_id,
                round=a.round,
                participant=self.id,
                weights_key=key,
                weights_sha256=sha,
                n_examples=len(x),
                metrics=metrics,
                signature=self.key.sign(message).hex(),
            ),
        )


async def serve(settings: ParticipantSettings, stop: asyncio.Event | None = None) -> None:
    """Run one participant until SIGINT/SIGTERM (or `stop`)."""
    stop = stop_on_signals(stop)
    key = SigningKey.load(settings.participant_key)
    if not Path(settings.participant_data).is_file():
        raise SystemExit(f"participant data {settings.participant_data} is not a file")
    bus = await Bus.from_settings(settings, name=f"fermion-participant-{settings.participant_id}")
    try:
        store = open_store(settings.store_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region)
        await Participant(bus, store, settings, key).run(stop)
    finally:
        await bus.close()


def main() -> None:
    """Entry point: `python -m fermion.functions.federated.participant`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(ParticipantSettings()))  # type: ignore[call-arg]  # required fields come from the environment


if __name__ == "__main__":
    main()
