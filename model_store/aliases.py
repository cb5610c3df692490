"""Alias records: the version an alias serves, or a weighted split of several during a rollout.

A record written before weights existed (`{"version": 3, "updated_at": ..., "history": [...]}`)
reads as a single-version alias; a reader that predates weights reads `version` from a weighted
record and serves the incumbent, never a half-baked canary.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, model_validator

HISTORY = 100
CHANGES = 50


class Bounds(BaseModel):
    """How much worse than the incumbent a canary may be and still move on."""

    max_error_delta: float = Field(default=0.02, ge=0, le=1)
    """Canary error ratio may exceed the incumbent's by at most this."""
    max_p99_ratio: float = Field(default=1.5, ge=1)
    """Canary p99 latency may be at most this times the incumbent's (plus `p99_slack_ms`)."""
    p99_slack_ms: float = Field(default=5.0, ge=0)
    max_accuracy_drop: float = Field(default=0.05, ge=0, le=1)
    """Where labels arrived: canary online accuracy may trail the incumbent's by at most this."""
    min_requests: int = Field(default=50, ge=1)
    """Requests the canary must have answered in a step before it is judged (no traffic: wait)."""
    min_labels: int = Field(default=20, ge=1)
    """Labelled predictions per version before accuracy is compared."""


class Rollout(BaseModel):
    """A canary in progress: the weight steps it climbs, how long each bakes, and how it is judged."""

    canary: int
    incumbent: int
    steps: list[int] = Field(default=[10, 50, 100], min_length=1)
    step: int = 0
    """Index into `steps` of the weight the canary has now."""
    bake_s: float = Field(default=300.0, ge=0)
    step_started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    bounds: Bounds = Bounds()
    automatic: bool = True
    """Whether the rollout controller steps and rolls back by itself (False: the CLI does)."""

    @model_validator(mode="after")
    def _steps_climb(self) -> Rollout:
        if any(not 0 < s <= 100 for s in self.steps) or self.steps != sorted(set(self.steps)):
            raise ValueError(f"rollout steps must climb strictly within 1..100; got {self.steps}")
        return self


class Change(BaseModel):
    """One move of an alias's split, kept in a bounded log."""

    at: datetime
    weights: dict[int, int]
    reason: str = ""


class Alias(BaseModel):
    """An alias record: the version it serves (the incumbent during a rollout), its history, its split."""

    version: int
    updated_at: datetime
    history: list[int] = []
    weights: dict[int, int] = {}
    """Version → weight (they sum to 100) while traffic is split; empty: all of it to `version`."""
    shadow: int | None = None
    """A version that receives a mirrored copy of the traffic; its answers are never returned."""
    rollout: Rollout | None = None
    changes: list[Change] = []

    def split(self) -> dict[int, int]:
        """Version → weight, summing to 100."""
        return dict(self.weights) if self.weights else {self.version: 100}

    def with_split(self, weights: dict[int, int], reason: str, rollout: Rollout | None) -> Alias:
        """This record with traffic split as `weights` (one version at 100: a plain alias again)."""
        weights = {v: w for v, w in weights.items() if w > 0}
        if sum(weights.values()) != 100:
            raise ValueError(f"weights must sum to 100; got {weights}")
        now = datetime.now(UTC)
        log = [*self.changes, Change(at=now, weights=weights, reason=reason)][-CHANGES:]
        single = len(weights) == 1
        return self.model_copy(
            update={
                "weights": {} if single else weights,
                "rollout": None if single else rollout,
                "updated_at": now,
                "changes": log,
            }
        )


def moved(current: Alias | None, version: int) -> Alias:
    """A single-version record for `version`, the old one's version pushed onto its history.

    A move ends any split and rollout (the shadow stays: it watches the alias, not a version).
    """
    if current is None:
        return Alias(version=version, updated_at=datetime.now(UTC))
    history = [*current.history, current.version][-HISTORY:] if current.version != version else current.history
    now = datetime.now(UTC)
    changes = [*current.changes, Change(at=now, weights={version: 100}, reason="moved")][-CHANGES:]
    return Alias(version=version, updated_at=now, history=history, shadow=current.shadow, changes=changes)
