"""Events of a served model's life after promotion: rollout steps, drift, and submitted labels.

Stored on the event log like every `fermion.models.*` event, so a pipeline rule (or a person
following the log) can react to them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from . import subjects
from .envelope import Event, Name, Payload

RolloutAction = Literal["started", "stepped", "promoted", "rolled_back", "waiting"]


class RolloutChange(Payload):
    """A canary moved (or is held), and why."""

    model_name: Name
    alias: str
    canary: int
    incumbent: int
    action: RolloutAction
    weights: dict[int, int]
    reason: str
    observed: dict[str, float] = Field(default_factory=dict)
    """What the decision was made on: per-version request counts, error ratios, p99s, accuracies."""


class DriftReport(Payload):
    """A window of served inputs (or predictions) no longer looks like the training data."""

    model_name: Name
    version: int
    window: int = Field(ge=0)
    """The window's sequence number for this version, since the monitor started."""
    rows: int = Field(ge=1)
    features: list[str]
    """The input features that moved (PSI over the threshold and KS significant after correction)."""
    psi: dict[str, float]
    ks_pvalue: dict[str, float]
    prediction_psi: float | None = None
    prediction_drift: bool = False


class LabelEntry(Payload):
    """The true label of one past prediction, by the request id it was answered under."""

    request_id: str = Field(min_length=1, max_length=128)
    label: str = Field(min_length=1, max_length=256)


class LabelBatch(Payload):
    """Ground truth for past predictions of a model."""

    model_name: Name
    labels: list[LabelEntry] = Field(min_length=1, max_length=10_000)


class ModelRollout(Event):
    type: Literal["models.rollout"] = "models.rollout"
    data: RolloutChange

    @property
    def subject(self) -> str:  # type: ignore[override]
        return f"{subjects.MODELS_ROLLOUT}.{self.data.action}"


class DriftDetected(Event):
    subject: ClassVar[str] = subjects.MODELS_DRIFT_DETECTED
    type: Literal["models.drift_detected"] = "models.drift_detected"
    data: DriftReport


class DriftJudged(Event):
    """One drift window judged, calm or not: what `GET /v1/models/{name}/drift` shows (alarms also go out
    as `DriftDetected`, which the retrain rules consume)."""

    subject: ClassVar[str] = subjects.MODELS_DRIFT_JUDGED
    type: Literal["models.drift_judged"] = "models.drift_judged"
    data: DriftReport


class LabelsSubmitted(Event):
    subject: ClassVar[str] = subjects.MODELS_LABELS
    type: Literal["models.labels"] = "models.labels"
    data: LabelBatch
