"""What the monitor measured of serving, kept where the ingest function can read it.

- `models/{tenant}/{model}/monitoring/serving.json`: a bounded series of windows per version (requests,
  errors, p50/p99 latency, labelled predictions and how many were right), from the inference
  functions' own telemetry as the monitor aggregates it. Appended by compare-and-swap, so several
  monitor replicas (each sees part of the telemetry: a queue group) never lose each other's windows.
- `models/{tenant}/{model}/monitoring/rollouts/{alias}.json`: the rollout controller's latest analysis of
  the alias (its comparison of canary and incumbent, its decision and why), overwritten each time.

Neither is a source of truth for anything: losing them loses a graph, never a decision. They lie
under the model's prefix, so whoever may read a model may read them; the monitor writes them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from .aliases import Bounds
from .backends import ObjectStore
from .errors import ObjectNotFound, PreconditionFailed, RegistryError
from .names import check_name

KEPT = 4000
"""Windows kept per model, all versions together (a day of 30 s windows for one version and its canary)."""


class ServingWindow(BaseModel):
    """One version's traffic in one window, as one monitor replica saw it."""

    version: int
    at: datetime = Field(description="the window's start")
    seconds: float = Field(gt=0, description="the window's length")
    requests: int = Field(ge=0)
    errors: int = Field(ge=0, description="requests answered with an error")
    p50_ms: float | None = Field(description="median latency; null: no requests")
    p99_ms: float | None
    labelled: int = Field(default=0, ge=0, description="predictions whose label arrived in the window")
    correct: int = Field(default=0, ge=0)


class VersionTraffic(BaseModel):
    """What the controller saw of one version since the current step began."""

    version: int
    requests: int
    errors: int
    error_ratio: float
    p99_ms: float
    labelled: int = Field(description="labelled predictions so far (online accuracy's sample size)")
    accuracy: float | None = Field(description="online accuracy; null: no labels yet")


class RolloutAnalysis(BaseModel):
    """The controller's latest verdict on a rollout: canary against incumbent, the decision and why."""

    at: datetime = Field(description="when it was judged")
    canary: int
    incumbent: int
    step: int = Field(description="index into the rollout's steps when judged")
    weight: int = Field(description="the canary's weight in percent when judged")
    step_started_at: datetime
    automatic: bool = Field(description="false: a manual rollout; the decision is advice, never acted on")
    decision: Literal["wait", "waiting", "step", "rollback"] = Field(
        description="wait: baking; waiting: baked but too few canary requests; step: within bounds and baked; "
        "rollback: outside a bound"
    )
    action: Literal["stepped", "promoted", "rolled_back"] | None = Field(
        description="what the controller did on this decision (null: nothing yet)"
    )
    reason: str
    canary_traffic: VersionTraffic
    incumbent_traffic: VersionTraffic
    bounds: Bounds


class ServingLog:
    """The serving windows and rollout analyses of every model, in one object store."""

    def __init__(self, store: ObjectStore, kept: int = KEPT) -> None:
        self.store = store
        self.kept = kept

    @staticmethod
    def _prefix(tenant: str, name: str) -> str:
        return f"models/{check_name('tenant', tenant)}/{check_name('model', name)}/monitoring/"

    def append(self, tenant: str, name: str, windows: list[ServingWindow]) -> None:
        """Add windows to the model's series, dropping the oldest past `kept`."""
        if not windows:
            return
        key = self._prefix(tenant, name) + "serving.json"
        for _ in range(50):
            condition: dict[str, Any]
            try:
                raw, etag = self.store.get(key)
                rows, condition = json.loads(raw), {"if_match": etag}
            except ObjectNotFound:
                rows, condition = [], {"if_none_match": True}
            rows = [*rows, *(w.model_dump(mode="json") for w in windows)][-self.kept :]
            try:
                self.store.put(key, json.dumps(rows).encode(), **condition)
            except PreconditionFailed:
                continue
            return
        raise RegistryError(f"serving series {key} kept changing under us")

    def windows(self, tenant: str, name: str) -> list[ServingWindow]:
        """The model's windows, oldest first (an unreadable row is skipped)."""
        try:
            raw, _ = self.store.get(self._prefix(tenant, name) + "serving.json")
        except ObjectNotFound:
            return []
        found = []
        for row in json.loads(raw):
            try:
                found.append(ServingWindow.model_validate(row))
            except ValidationError:
                continue
        return found

    def put_analysis(self, tenant: str, name: str, alias: str, analysis: RolloutAnalysis) -> None:
        """Keep the controller's latest analysis of `alias` (the last writer wins)."""
        key = f"{self._prefix(tenant, name)}rollouts/{check_name('alias', alias)}.json"
        self.store.put(key, analysis.model_dump_json().encode())

    def analysis(self, tenant: str, name: str, alias: str) -> RolloutAnalysis | None:
        """The latest analysis of `alias`'s rollout (None: never judged, or unreadable)."""
        try:
            raw, _ = self.store.get(f"{self._prefix(tenant, name)}rollouts/{check_name('alias', alias)}.json")
            return RolloutAnalysis.model_validate_json(raw)
        except (ObjectNotFound, ValidationError):
            return None
