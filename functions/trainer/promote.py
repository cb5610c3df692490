"""The promotion gate: move an alias to a new version only if it clears the bar and beats the incumbent."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fermion.events import AliasMove, Bus, Gate, ModelPromoted, ModelRollout, RolloutChange, derive_id
from fermion.events.training import LOWER_IS_BETTER, better
from fermion.model_store import AliasConflict, AliasNotFound, Manifest, Registry, RolloutInProgress, Rollouts

log = logging.getLogger("fermion.trainer")


@dataclass(frozen=True)
class Decision:
    """What the gate decided, and why."""

    promoted: bool
    reason: str
    previous: int | None = None
    canary: dict[int, int] | None = None
    """The split a passing version was canaried at (the gate asked for a canary and there was an incumbent)."""


def apply_gate(registry: Registry, manifest: Manifest, gate: Gate, *, attempts: int = 3) -> Decision:
    """Promote `manifest` to `gate.alias` if it passes; the alias moves by compare-and-swap."""
    tenant, name, version = manifest.tenant, manifest.name, manifest.version
    score = manifest.metrics.get(gate.metric)
    if score is None:
        return Decision(False, f"the version has no metric {gate.metric!r}; it has {sorted(manifest.metrics)}")
    if score < gate.minimum:
        return Decision(False, f"{gate.metric} {score:.4f} is below the gate's minimum {gate.minimum}")
    if gate.maximum is not None and score > gate.maximum:
        return Decision(False, f"{gate.metric} {score:.4f} is above the gate's maximum {gate.maximum}")
    for _ in range(attempts):
        try:
            current = registry.resolve(tenant, name, gate.alias)
        except AliasNotFound:
            current = None
        if current == version:
            return Decision(True, f"{gate.alias} already points at version {version}", current)
        if current is not None and gate.not_worse_than_current:
            worst = float("inf") if gate.metric in LOWER_IS_BETTER else float("-inf")
            incumbent = registry.manifest(tenant, name, current).metrics.get(gate.metric, worst)
            if better(gate.metric, incumbent, score):
                return Decision(
                    False,
                    f"{gate.metric} {score:.4f} is worse than {gate.alias} version {current}'s {incumbent:.4f}",
                    current,
                )
        if gate.canary and current is not None:  # issue 17: a canary the rollout controller steps
            return _canary(registry, manifest, gate, current)
        try:
            registry.set_alias(tenant, name, gate.alias, version, expected=current)
        except RolloutInProgress as exc:  # a gate never ends a running rollout (issue 27)
            return Decision(False, f"not promoted: {exc}", current)
        except AliasConflict:
            continue  # someone moved it while we compared: judge against the new incumbent
        bar = f"≤ {gate.maximum}" if gate.maximum is not None else f"≥ {gate.minimum}"
        return Decision(True, f"{gate.metric} {score:.4f} {bar}", current)
    return Decision(False, f"{gate.alias} kept moving under us; left it alone")


def _canary(registry: Registry, manifest: Manifest, gate: Gate, incumbent: int) -> Decision:
    """Start a rollout of `manifest` against `incumbent` on the gate's alias."""
    try:
        record = Rollouts(registry).start(
            manifest.tenant, manifest.name, gate.alias, manifest.version, steps=gate.canary, bake_s=gate.bake_s
        )
    except AliasConflict as exc:
        return Decision(False, f"not canaried: {exc}", incumbent)
    split = record.split()
    return Decision(True, f"canary at {split.get(manifest.version, 0)}% beside version {incumbent}", incumbent, split)


async def promote_and_announce(
    bus: Bus, registry: Registry, manifest: Manifest, gate: Gate, *, event_id: str, tenant: str
) -> Decision:
    """Apply the gate off the event loop; a promotion goes out as `models.promoted` (id `{event_id}.promoted`)."""
    decision = await asyncio.to_thread(apply_gate, registry, manifest, gate)
    if decision.canary is not None:
        change = RolloutChange(
            model_name=manifest.name,
            alias=gate.alias,
            canary=manifest.version,
            incumbent=decision.previous or 0,
            action="started",
            weights=decision.canary,
            reason=f"gate passed: {decision.reason}",
        )
        await bus.publish(ModelRollout(id=derive_id(event_id, "canary"), tenant=tenant, data=change))
    elif decision.promoted:
        await bus.publish(
            ModelPromoted(
                id=derive_id(event_id, "promoted"),
                tenant=tenant,
                data=AliasMove(
                    model_name=manifest.name,
                    alias=gate.alias,
                    version=manifest.version,
                    previous_version=decision.previous,
                ),
            )
        )
    return decision
