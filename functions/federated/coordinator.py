"""The federation coordinator: a stateless replica on the shared durable consumer of federation requests.

It holds one federation message while the federation runs (heartbeating, as a sweep does) and,
for each round: writes the global weights create-only, publishes `federated.round.started`,
collects the updates (aggregator.py), aggregates them, evaluates the result on its own held-out
set, registers it as a version whose lineage lists every applied update, records the round's
result create-only and publishes `federated.round.completed`. Every step's outcome is in the
store, so a redelivered federation resumes after its last completed round.

Only this module decides a federation message's fate: done → ack; FederationError (bad spec,
unreadable held-out set, no quorum) → `federated.failed`, dead-letter, term; anything else → nak.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from pydantic import ValidationError

from fermion.events import Bus, BusError, ConsumerPolicy, Delivery, derive_id, streams, subjects
from fermion.events.federation import (
    FederationCompleted,
    FederationFailed,
    FederationRequested,
    FederationResult,
    RoundAnnouncement,
    RoundCompleted,
    RoundResult,
    RoundStarted,
)
from fermion.events.schemas import parse_event
from fermion.model_store import (
    DatasetStore,
    Draft,
    InvalidName,
    Lineage,
    NotFound,
    ObjectNotFound,
    Registry,
    Signature,
    TensorSpec,
    code_version,
    open_registry,
)
from fermion.service.consumer import consume
from fermion.service.lifecycle import stop_on_signals

from . import accountant
from .aggregator import Applied, RoundAggregator
from .data import load_labelled
from .errors import FederationError, NoQuorum
from .model import build_module, export, load_state, state_of
from .settings import CoordinatorSettings, get_coordinator_settings
from .store import FederationStore
from .weights import State, dumps, loads

log = logging.getLogger("fermion.federated")


class Coordinator:
    """Runs federations from the shared `federations` consumer."""

    def __init__(self, bus: Bus, registry: Registry, settings: CoordinatorSettings) -> None:
        self.bus, self.registry, self.settings = bus, registry, settings

    async def run(self, stop: asyncio.Event) -> None:
        """Consume federation requests until `stop` is set."""
        log.info("coordinator consuming %s", subjects.FEDERATED_REQUESTED)
        await consume(
            self.bus,
            streams.FEDERATION_DURABLE,
            streams.JOBS_STREAM,
            self.handle,
            stop,
            retry_delay_s=self.settings.retry_delay_s,
        )

    async def handle(self, delivery: Delivery) -> None:
        """Decide one federation message's fate."""
        try:
            event = parse_event(delivery.data, FederationRequested)
        except ValidationError as exc:
            await self._dead_letter(delivery, f"malformed federated.requested event: {exc}")
            await delivery.term()
            return
        assert isinstance(event, FederationRequested)
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            await self._federate(event)
        except (FederationError, InvalidName, NotFound, ObjectNotFound) as exc:
            await self._fail(delivery, event, str(exc))
            return
        except Exception as exc:  # transient until the last delivery: the next one resumes from the store
            log.exception("federation %s: delivery %d failed", event.id, delivery.num_delivered)
            if delivery.num_delivered >= self.settings.max_deliver:
                await self._fail(delivery, event, f"{type(exc).__name__}: {exc}")
            else:
                await delivery.nak(self.settings.retry_delay_s)
            return
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await delivery.ack()

    async def _federate(self, event: FederationRequested) -> None:
        spec, fed = event.data, event.id
        if spec.min_updates > len(spec.participants):
            raise FederationError(f"min_updates {spec.min_updates} exceeds the {len(spec.participants)} participants")
        if len({m.id for m in spec.participants}) != len(spec.participants):
            raise FederationError("participant ids must be unique")
        fstore = FederationStore(self.registry.store, event.tenant, fed)
        x_hold, y_hold = await asyncio.to_thread(self._holdout, event)
        module = build_module(spec.recipe, x_hold, len(spec.labels))
        like = state_of(module)
        aggregator = RoundAggregator(self.bus, fstore, fed, event.tenant, spec)
        since = event.time - timedelta(seconds=1)
        result: dict[str, Any] = {}
        stopped: str | None = None
        if not accountant.affordable(spec.privacy, 1):
            assert spec.privacy is not None
            raise FederationError(accountant.refusal(spec.privacy, 1))
        for r in range(1, spec.rounds + 1):
            done = fstore.result(r)
            if done is None and not accountant.affordable(spec.privacy, r):
                assert spec.privacy is not None
                stopped = accountant.refusal(spec.privacy, r)  # before the round: no update of it exists
                log.warning("federation %s: %s", fed, stopped)
                break
            if done is None:
                global_bytes, global_sha = self._global(fstore, r, like)
                like = loads(global_bytes, like)
                await self._announce(event, r, fstore.global_key(r), global_sha)
                applied = await aggregator.collect(r, like, spec.round_deadline_s, since)
                if len(applied) < spec.min_updates:
                    raise NoQuorum(
                        f"round {r}: {len(applied)} valid update(s) by the deadline of {spec.round_deadline_s:.0f}s; "
                        f"min_updates is {spec.min_updates}"
                    )
                new_state = aggregator.aggregate(applied)
                done = await asyncio.to_thread(
                    self._register, event, r, module, new_state, applied, global_sha, x_hold, y_hold
                )
                await self._completed(event, r, done)
            result = done
            like = loads(fstore.get(fstore.global_key(r + 1)) or b"", like)
            if spec.target_accuracy is not None and done["metrics"]["accuracy"] >= spec.target_accuracy:
                stopped = f"target accuracy {spec.target_accuracy} reached in round {r}"
                log.info("federation %s: %s", fed, stopped)
                break
        await self.bus.publish(
            FederationCompleted(
                id=derive_id(fed, "completed"),
                tenant=event.tenant,
                data=FederationResult(
                    federation_id=fed,
                    model_name=spec.model_name,
                    rounds=int(result["round"]),
                    version=int(result["version"]),
                    metrics=result["metrics"],
                    stopped=stopped,
                    privacy=result.get("privacy"),
                ),
            )
        )

    @staticmethod
    def _global(fstore: FederationStore, r: int, initial: State) -> tuple[bytes, str]:
        """Round `r`'s starting weights: the seeded initial ones for round 1, the previous round's result after."""
        if r == 1:
            return fstore.put_global(1, dumps(initial))
        data = fstore.get(fstore.global_key(r))
        if data is None:
            raise FederationError(f"round {r - 1} has a result but round {r}'s global weights are missing")
        return data, hashlib.sha256(data).hexdigest()

    def _holdout(self, event: FederationRequested) -> tuple[np.ndarray, np.ndarray]:
        spec = event.data
        ref = spec.holdout
        if ref.format != "npz":
            raise FederationError(f"the held-out set must be an .npz (x, y); {ref.name} is {ref.format}")
        with TemporaryDirectory(prefix="fermion-fed-") as tmp:
            path = DatasetStore(self.registry.store).fetch(
                event.tenant, ref.name, ref.sha256, ref.format, Path(tmp) / "holdout.npz"
            )
            return load_labelled(path, spec.labels, spec.n_features)

    async def _announce(self, event: FederationRequested, r: int, key: str, sha: str) -> None:
        spec = event.data
        await self.bus.publish(
            RoundStarted(
                id=derive_id(event.id, r, "started"),
                tenant=event.tenant,
                data=RoundAnnouncement(
                    federation_id=event.id,
                    round=r,
                    model_name=spec.model_name,
                    participants=[m.id for m in spec.participants],
                    weights_key=key,
                    weights_sha256=sha,
                    recipe=spec.recipe,
                    labels=spec.labels,
                    n_features=spec.n_features,
                    proximal_mu=spec.proximal_mu,
                    privacy=spec.privacy,
                    deadline=datetime.now(UTC) + timedelta(seconds=spec.round_deadline_s),
                ),
            )
        )
        log.info("federation %s: round %d started", event.id, r)

    def _register(
        self,
        event: FederationRequested,
        r: int,
        module: Any,
        state: State,
        applied: dict[str, Applied],
        global_sha: str,
        x_hold: np.ndarray,
        y_hold: np.ndarray,
    ) -> dict[str, Any]:
        """Export, evaluate and register the round's global model (once), then record the round's result."""
        spec, fed = event.data, event.id
        fstore = FederationStore(self.registry.store, event.tenant, fed)
        run_id = f"{fed}.round.{r}"
        spent = accountant.ledger(spec.privacy, r) if spec.privacy else None
        manifest = next(
            (
                m
                for v in self.registry.versions(event.tenant, spec.model_name)[::-1][:50]
                if (m := self.registry.manifest(event.tenant, spec.model_name, v)).lineage.training_event_id == run_id
            ),
            None,
        )
        if manifest is None:
            graph, report = export(load_state(module, state), x_hold, y_hold, len(spec.labels))
            updates = [applied[p].record for p in sorted(applied)]
            draft = Draft(
                signature=Signature(
                    inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, spec.n_features])],
                    outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, len(spec.labels)])],
                ),
                labels=spec.labels,
                metrics=report["metrics"],
                lineage=Lineage(
                    training_event_id=run_id,
                    dataset_sha256=spec.holdout.sha256,
                    dataset_uri=spec.holdout.uri,
                    recipe=spec.recipe.model_dump(),
                    code_version=code_version(),
                    federated={
                        "federation_id": fed,
                        "round": r,
                        "aggregation": spec.aggregation,
                        "trim_fraction": spec.trim_fraction if spec.aggregation == "trimmed_mean" else None,
                        "proximal_mu": spec.proximal_mu,
                        "privacy": {**spec.privacy.model_dump(), **spent} if spec.privacy and spent else None,
                        "global_weights_sha256": global_sha,
                        "updates": updates,
                        "n_examples": sum(int(u["n_examples"]) for u in updates),
                    },
                ),
                compile_report={"parity": report["parity"], "evaluated_on": "coordinator held-out set"},
            )
            manifest = self.registry.register(event.tenant, spec.model_name, {"model.onnx": graph}, draft)
        fstore.put_global(r + 1, dumps(state))  # before the result: a recorded round always has its successor's start
        return fstore.put_result(
            r,
            {
                "round": r,
                "version": manifest.version,
                "metrics": manifest.metrics,
                "participants": sorted(applied),
                "n_examples": sum(int(a.record["n_examples"]) for a in applied.values()),
                "privacy": spent,
            },
        )

    async def _completed(self, event: FederationRequested, r: int, done: dict[str, Any]) -> None:
        await self.bus.publish(
            RoundCompleted(
                id=derive_id(event.id, r, "completed"),
                tenant=event.tenant,
                data=RoundResult(
                    federation_id=event.id,
                    round=r,
                    model_name=event.data.model_name,
                    version=int(done["version"]),
                    metrics=done["metrics"],
                    participants=done["participants"],
                    n_examples=int(done["n_examples"]),
                    privacy=done.get("privacy"),
                ),
            )
        )
        log.info("federation %s: round %d → version %s %s", event.id, r, done["version"], done["metrics"])

    async def _fail(self, delivery: Delivery, event: FederationRequested, reason: str) -> None:
        log.error("federation %s failed: %s", event.id, reason)
        await self.bus.publish(FederationFailed.of(event, reason))
        await self._dead_letter(delivery, reason)
        await delivery.term()

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep the federation message on `fermion.dlq.<subject>`, once per message; its term is the caller's."""
        await self.bus.dead_letter(
            delivery.subject,
            delivery.data,
            reason,
            deliveries=delivery.num_delivered,
            msg_id=f"dlq.jobs.{delivery.seq}",
        )

    async def _heartbeat(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(max(self.settings.ack_wait_s / 3, 0.5))
            with contextlib.suppress(BusError):  # a missed heartbeat only risks a redelivery, which resumes
                await delivery.in_progress()


async def serve(settings: CoordinatorSettings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one coordinator until SIGINT/SIGTERM (or `stop`)."""
    settings = settings or get_coordinator_settings()
    stop = stop_on_signals(stop)
    bus = await Bus.from_settings(settings, name="fermion-federated-coordinator")
    try:
        policy = ConsumerPolicy(ack_wait_s=settings.ack_wait_s, max_deliver=settings.max_deliver)
        await bus.prepare(settings, [(streams.JOBS_STREAM, streams.FEDERATION_DURABLE)], policy)
        await Coordinator(bus, open_registry(settings), settings).run(stop)
    finally:
        await bus.close()


def main() -> None:
    """Entry point: `python -m fermion.functions.federated`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve())
