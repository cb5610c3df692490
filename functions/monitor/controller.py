"""The rollout controller: steps a canary's weight after its bake time, or rolls it back, by itself.

Stateless: the plan and the current step live in the alias record (`model_store/aliases.py`);
what the controller keeps in memory is only the traffic seen since the current step began (per
version, from the inference functions' telemetry) and, through the ledger, online accuracy. A
restarted controller starts the step's observation afresh, which only makes it wait longer.

Each tick, per alias under an automatic rollout (`judge`):

- the canary answered fewer than `min_requests` in this step → wait (announced once per step
  when the bake time has passed: never promote blind);
- its error ratio, p99 latency or (with enough labels) accuracy is outside the bounds of the
  incumbent's → roll back, and say which bound and by how much;
- the bake time has passed and it is within bounds → the next step (100: the canary is the alias).

Every verdict, a manual rollout's too (advice there, never acted on), is kept in the store as the
alias's latest `RolloutAnalysis` (`model_store/serving.py`) for the rollout status route, and in
the monitor's metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from fermion.events import Bus, ModelRollout, RolloutChange
from fermion.events.traffic import VersionStats
from fermion.model_store import (
    Alias,
    AliasConflict,
    Registry,
    RegistryError,
    Rollout,
    RolloutAnalysis,
    Rollouts,
    ServingLog,
    VersionTraffic,
)
from fermion.service.observability.monitor import MonitorMetrics

from .ledger import Accuracy

log = logging.getLogger("fermion.monitor")
MAX_LATENCIES = 20_000
KEEP_EVERY_S = 10.0
"""An unchanged analysis is stored again this often (its `at` says the controller still judges)."""
AliasKey = tuple[str, str, str]


@dataclass
class Observed:
    """One version's traffic through one alias since the current step began."""

    requests: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def add(self, stats: VersionStats) -> None:
        """Fold in one telemetry interval."""
        self.requests += stats.requests
        self.errors += stats.errors
        room = MAX_LATENCIES - len(self.latency_ms)
        self.latency_ms.extend(stats.latency_ms[: max(room, 0)])

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latency_ms, 99)) if self.latency_ms else 0.0


@dataclass(frozen=True)
class Decision:
    """What to do with a rollout now, and why."""

    action: str  # "wait", "waiting" (announce), "step", "rollback"
    reason: str
    observed: dict[str, float]


def judge(
    plan: Rollout, canary: Observed, incumbent: Observed, accuracy: tuple[Accuracy, Accuracy], now: datetime
) -> Decision:
    """The verdict on a canary from its traffic and labels against the incumbent's."""
    b = plan.bounds
    acc_c, acc_i = accuracy
    seen = {
        "canary_requests": canary.requests,
        "incumbent_requests": incumbent.requests,
        "canary_error_ratio": round(canary.error_ratio, 4),
        "incumbent_error_ratio": round(incumbent.error_ratio, 4),
        "canary_p99_ms": round(canary.p99_ms, 3),
        "incumbent_p99_ms": round(incumbent.p99_ms, 3),
        "canary_labelled": acc_c.labelled,
        "incumbent_labelled": acc_i.labelled,
    }
    if acc_c.ratio is not None and acc_i.ratio is not None:
        seen |= {"canary_accuracy": round(acc_c.ratio, 4), "incumbent_accuracy": round(acc_i.ratio, 4)}
    baked = (now - plan.step_started_at).total_seconds() >= plan.bake_s
    if canary.requests < b.min_requests:
        if baked:
            return Decision(
                "waiting", f"canary answered {canary.requests} of the {b.min_requests} requests needed", seen
            )
        return Decision("wait", "baking", seen)
    if canary.error_ratio > incumbent.error_ratio + b.max_error_delta:
        return Decision(
            "rollback",
            f"error ratio {canary.error_ratio:.3f} over the incumbent's {incumbent.error_ratio:.3f} "
            f"+ {b.max_error_delta}",
            seen,
        )
    if acc_c.labelled >= b.min_labels and acc_i.labelled >= b.min_labels:
        assert acc_c.ratio is not None and acc_i.ratio is not None
        if acc_c.ratio < acc_i.ratio - b.max_accuracy_drop:
            return Decision(
                "rollback",
                f"online accuracy {acc_c.ratio:.3f} on {acc_c.labelled} labels is under the incumbent's "
                f"{acc_i.ratio:.3f} - {b.max_accuracy_drop}",
                seen,
            )
    if incumbent.requests >= b.min_requests and canary.p99_ms > incumbent.p99_ms * b.max_p99_ratio + b.p99_slack_ms:
        return Decision(
            "rollback",
            f"p99 {canary.p99_ms:.2f} ms over the incumbent's {incumbent.p99_ms:.2f} ms x {b.max_p99_ratio} "
            f"+ {b.p99_slack_ms} ms",
            seen,
        )
    if not baked:
        return Decision("wait", "baking", seen)
    return Decision("step", f"within bounds for {plan.bake_s:g}s at {plan.steps[plan.step]}%", seen)


class Controller:
    """Judges every alias seen under a rollout, each tick; keeps its latest analysis where ingest reads it."""

    def __init__(
        self,
        bus: Bus,
        registry: Registry,
        accuracy: Callable[[str, str, int], Accuracy],
        *,
        serving: ServingLog | None = None,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.rollouts = Rollouts(registry)
        self.serving = serving
        self.metrics = metrics
        self._accuracy = accuracy
        self.watched: set[AliasKey] = set()
        self._observed: dict[AliasKey, dict[int, Observed]] = {}
        self._step_of: dict[AliasKey, tuple[int, int]] = {}
        self._announced: set[tuple[AliasKey, int, int]] = set()
        self._kept: dict[AliasKey, tuple[object, float]] = {}

    def watch(self, tenant: str, name: str, alias: str) -> None:
        """Judge this alias from now on (a rollout started on it)."""
        self.watched.add((tenant, name, alias))

    def record(self, stats: VersionStats) -> None:
        """Fold one version's telemetry interval into its alias's current step."""
        if stats.alias is None:
            return
        key = (stats.tenant, stats.name, stats.alias)
        self.watched.add(key)
        self._observed.setdefault(key, {}).setdefault(stats.version, Observed()).add(stats)

    async def tick(self) -> None:
        """Judge every watched alias once."""
        for key in sorted(self.watched):
            try:
                record = await asyncio.to_thread(self.registry.alias, *key)
            except RegistryError as exc:
                log.warning("cannot read alias %s: %s", key, exc)
                continue
            await self._judge(key, record)

    async def _judge(self, key: AliasKey, record: Alias) -> None:
        plan = record.rollout
        if plan is None:
            self._observed.pop(key, None)
            self._step_of.pop(key, None)
            if self.metrics is not None:
                self.metrics.ended(key)
            return
        if self._step_of.get(key) != (plan.canary, plan.step):  # a new step: observe it from scratch
            self._step_of[key] = (plan.canary, plan.step)
            self._observed[key] = {}
        seen = self._observed.setdefault(key, {})
        tenant, name, _ = key
        accuracy = (self._accuracy(tenant, name, plan.canary), self._accuracy(tenant, name, plan.incumbent))
        observed = (seen.get(plan.canary, Observed()), seen.get(plan.incumbent, Observed()))
        decision = judge(plan, *observed, accuracy, datetime.now(UTC))
        # What the decision saw, before any await lets more telemetry into the same counters.
        traffic = (_traffic(plan.canary, observed[0], accuracy[0]), _traffic(plan.incumbent, observed[1], accuracy[1]))
        weight = record.split().get(plan.canary, 0)
        if self.metrics is not None:
            self.metrics.compared(key, plan.canary, plan.incumbent, weight, decision.observed)
        action = None
        # A manual rollout is judged too (its page shows the verdict) but never moved by the controller.
        if plan.automatic and decision.action == "waiting":
            if (key, plan.canary, plan.step) not in self._announced:
                self._announced.add((key, plan.canary, plan.step))
                await self._announce(key, record, plan, "waiting", decision, record.split())
                self._acted(key, "waiting")
        elif plan.automatic and decision.action != "wait":
            action = await self._act(key, record, plan, decision)
        await self._keep(key, plan, weight, decision, traffic, action)

    async def _act(self, key: AliasKey, record: Alias, plan: Rollout, decision: Decision) -> str | None:
        tenant, name, alias = key
        try:
            if decision.action == "rollback":
                moved = await asyncio.to_thread(self.rollouts.abort, tenant, name, alias)
                action = "rolled_back"
            else:
                moved = await asyncio.to_thread(self.rollouts.step, tenant, name, alias, expected_step=plan.step)
                action = "promoted" if moved.rollout is None else "stepped"
        except AliasConflict as exc:  # someone else moved it meanwhile: judge the new state next tick
            log.info("rollout of %s@%s moved under us: %s", name, alias, exc)
            return None
        log.info("rollout of %s@%s version %d: %s (%s)", name, alias, plan.canary, action, decision.reason)
        await self._announce(key, record, plan, action, decision, moved.split())
        self._acted(key, action)
        return action

    def _acted(self, key: AliasKey, action: str) -> None:
        if self.metrics is not None:
            self.metrics.acted(key, action)
            if action in ("promoted", "rolled_back"):
                self.metrics.ended(key)

    async def _keep(
        self,
        key: AliasKey,
        plan: Rollout,
        weight: int,
        decision: Decision,
        traffic: tuple[VersionTraffic, VersionTraffic],
        action: str | None,
    ) -> None:
        """Store the analysis for the rollout page: when it changed, or every KEEP_EVERY_S while it stands."""
        if self.serving is None:
            return
        fingerprint = (plan.canary, plan.step, decision.action, decision.reason, decision.observed, action)
        was = self._kept.get(key)
        now = time.monotonic()
        if was is not None and was[0] == fingerprint and now - was[1] < KEEP_EVERY_S:
            return
        analysis = RolloutAnalysis(
            at=datetime.now(UTC),
            canary=plan.canary,
            incumbent=plan.incumbent,
            step=plan.step,
            weight=weight,
            step_started_at=plan.step_started_at,
            automatic=plan.automatic,
            decision=decision.action,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
            reason=decision.reason,
            canary_traffic=traffic[0],
            incumbent_traffic=traffic[1],
            bounds=plan.bounds,
        )
        try:
            await asyncio.to_thread(self.serving.put_analysis, *key, analysis)
        except RegistryError as exc:  # the page goes stale for a tick; the rollout itself is unaffected
            log.warning("rollout analysis of %s not kept: %s", key, exc)
            return
        self._kept[key] = (fingerprint, now)

    async def _announce(
        self, key: AliasKey, record: Alias, plan: Rollout, action: str, decision: Decision, weights: dict[int, int]
    ) -> None:
        tenant, name, alias = key
        change = RolloutChange(
            model_name=name,
            alias=alias,
            canary=plan.canary,
            incumbent=plan.incumbent,
            action=action,  # type: ignore[arg-type]
            weights=weights,
            reason=decision.reason,
            observed=decision.observed,
        )
        stamp = plan.step_started_at.strftime("%Y%m%dT%H%M%S%f")
        # The same verdict from two replicas (or a retried tick) is one event on the log.
        event_id = hashlib.sha256(f"{tenant}/{name}@{alias}:{plan.canary}:{plan.step}:{stamp}:{action}".encode())
        await self.bus.publish(ModelRollout(id=event_id.hexdigest()[:40], tenant=tenant, data=change))


def _traffic(version: int, seen: Observed, accuracy: Accuracy) -> VersionTraffic:
    return VersionTraffic(
        version=version,
        requests=seen.requests,
        errors=seen.errors,
        error_ratio=round(seen.error_ratio, 4),
        p99_ms=round(seen.p99_ms, 3),
        labelled=accuracy.labelled,
        accuracy=None if accuracy.ratio is None else round(accuracy.ratio, 4),
    )
