"""The promotion gate: a floor, no regression, and a compare-and-swap move."""

from __future__ import annotations

from fermion.events import Gate
from fermion.functions.trainer.promote import apply_gate
from fermion.model_store import Registry, Rollouts
from tests.helpers import linear_draft, linear_onnx


def _register(registry: Registry, f1: float) -> int:
    draft = linear_draft().model_copy(update={"metrics": {"macro_f1": f1}})
    return registry.register("default", "g", {"model.onnx": linear_onnx(seed=int(f1 * 100))}, draft).version


def test_the_gate_promotes_only_above_the_floor_and_never_backwards(registry: Registry) -> None:
    gate = Gate(alias="production", metric="macro_f1", minimum=0.9)
    low = _register(registry, 0.5)
    decision = apply_gate(registry, registry.manifest("default", "g", low), gate)
    assert not decision.promoted and "below the gate's minimum 0.9" in decision.reason

    good = _register(registry, 0.95)
    assert apply_gate(registry, registry.manifest("default", "g", good), gate).promoted
    assert registry.resolve("default", "g", "production") == good

    worse = _register(registry, 0.92)
    decision = apply_gate(registry, registry.manifest("default", "g", worse), gate)
    assert not decision.promoted and "worse than production version 2" in decision.reason
    assert registry.resolve("default", "g", "production") == good

    better = _register(registry, 0.97)
    decision = apply_gate(registry, registry.manifest("default", "g", better), gate)
    assert decision.promoted and decision.previous == good
    # Delivered again (a redelivery after a crash): nothing moves, it is already promoted.
    assert apply_gate(registry, registry.manifest("default", "g", better), gate).previous == better


def test_a_missing_metric_holds_the_version(registry: Registry) -> None:
    v = _register(registry, 0.99)
    decision = apply_gate(registry, registry.manifest("default", "g", v), Gate(metric="auc"))
    assert not decision.promoted and "no metric 'auc'" in decision.reason


def test_a_gate_never_ends_a_running_rollout(registry: Registry) -> None:
    gate = Gate(alias="production", metric="macro_f1", minimum=0.5, not_worse_than_current=False)
    first, canary, better = _register(registry, 0.6), _register(registry, 0.7), _register(registry, 0.9)
    registry.set_alias("default", "g", "production", first)
    Rollouts(registry).start("default", "g", "production", canary)
    decision = apply_gate(registry, registry.manifest("default", "g", better), gate)
    assert not decision.promoted and "not promoted: g@production is rolling out version 2" in decision.reason
    assert registry.alias("default", "g", "production").split() == {first: 90, canary: 10}
