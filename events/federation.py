"""Federated training events (issue 18): a federation, its rounds, the participants' signed updates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from . import subjects
from .envelope import Event, Name, Payload, Sha256, derive_id
from .training import DatasetRef, Recipe

PublicKeyHex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SignatureHex = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class FederationMember(Payload):
    """A participant (a tenant or a site) and the Ed25519 public key its updates are signed with."""

    id: Name
    public_key: PublicKeyHex


class Privacy(Payload):
    """Differential privacy on each update: clip the weight delta's L2 norm, add Gaussian noise.

    With `epsilon`, the federation has a budget: the coordinator's accountant (dp-accounting, RDP)
    stops it before a round that would spend more than (epsilon, delta).
    """

    clip_norm: float = Field(gt=0)
    noise_multiplier: float = Field(default=0.0, ge=0)
    """The noise's standard deviation, in units of clip_norm."""
    epsilon: float | None = Field(default=None, gt=0, le=1000, description="the budget; None: no limit")
    delta: float = Field(default=1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _noise_for_a_budget(self) -> Privacy:
        if self.epsilon is not None and self.noise_multiplier <= 0:
            raise ValueError("an epsilon budget needs noise: set noise_multiplier > 0")
        return self


class FederationSpec(Payload):
    """A federation: what to train, with whom, for how many rounds, and when a round may close."""

    model_name: Name
    recipe: Recipe = Recipe()
    """Architecture and local training (epochs per round, learning rate, batch size, seed)."""
    labels: list[str] = Field(min_length=2, max_length=10_000)
    n_features: int = Field(ge=1)
    rounds: int = Field(default=10, ge=1, le=1000)
    participants: list[FederationMember] = Field(min_length=1, max_length=1000)
    min_updates: int = Field(default=1, ge=1)
    round_deadline_s: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)
    holdout: DatasetRef
    """The coordinator's own held-out set (in the store); participants' data never is."""
    aggregation: Literal["fedavg", "trimmed_mean"] = "fedavg"
    trim_fraction: float = Field(default=0.2, ge=0, lt=0.5)
    proximal_mu: float = Field(default=0.0, ge=0)
    """FedProx: weight of the proximal term mu/2 * ||w - w_global||^2 in local training (0: FedAvg)."""
    privacy: Privacy | None = None
    target_accuracy: float | None = Field(default=None, gt=0, le=1)
    """Stop early once the global model's held-out accuracy reaches this."""

    @model_validator(mode="after")
    def _quorum_fits(self) -> FederationSpec:
        ids = [m.id for m in self.participants]
        if len(set(ids)) != len(ids):
            raise ValueError("participant ids must be unique")
        if self.min_updates > len(ids):
            raise ValueError(f"min_updates {self.min_updates} exceeds the {len(ids)} participants")
        return self


class RoundAnnouncement(Payload):
    """A round is open: the global weights' address and digest, and how to train on them."""

    federation_id: str
    round: int = Field(ge=1)
    model_name: Name
    participants: list[Name]
    weights_key: str
    weights_sha256: Sha256
    recipe: Recipe
    labels: list[str]
    n_features: int = Field(ge=1)
    proximal_mu: float = 0.0
    privacy: Privacy | None = None
    deadline: datetime


class UpdateReport(Payload):
    """A participant's update: its weights' address and digest in the store, signed by the participant."""

    federation_id: str
    round: int = Field(ge=1)
    participant: Name
    weights_key: str
    weights_sha256: Sha256
    n_examples: int = Field(ge=1)
    metrics: dict[str, float] = Field(default={})
    signature: SignatureHex
    """Ed25519 over update_message(...) with the participant's key."""


class UpdateRefusal(Payload):
    """An update that was not applied, and why."""

    federation_id: str
    round: int
    participant: str
    reason: str


class RoundResult(Payload):
    """A round closed: the aggregated global model is a registered version."""

    federation_id: str
    round: int
    model_name: Name
    version: int
    metrics: dict[str, float]
    participants: list[Name]
    n_examples: int
    privacy: dict[str, Any] | None = None
    """The privacy spent (functions/federated/accountant.py): this round's epsilon and the total so far."""


class FederationResult(Payload):
    """A federation ended: after its last round, early at its target accuracy, or at its privacy budget."""

    federation_id: str
    model_name: Name
    rounds: int
    version: int
    metrics: dict[str, float]
    stopped: str | None = None
    """Why it ended before its last round (the target accuracy, or the privacy budget); None: all ran."""
    privacy: dict[str, Any] | None = None


class FederationFailure(Payload):
    """A federation stopped without finishing, and why."""

    federation_id: str
    model_name: str
    round: int
    reason: str


def update_message(
    federation_id: str, round: int, participant: str, weights_sha256: str, n_examples: int, metrics: dict[str, float]
) -> bytes:
    """The bytes a participant signs for an update (every field that decides how it is applied)."""
    body = [federation_id, round, participant, weights_sha256, n_examples, sorted(metrics.items())]
    return b"fermion.federated.update.v1\n" + json.dumps(body, separators=(",", ":")).encode()


class FederationRequested(Event):
    subject: ClassVar[str] = subjects.FEDERATED_REQUESTED
    type: Literal["federated.requested"] = "federated.requested"
    data: FederationSpec


class RoundStarted(Event):
    subject: ClassVar[str] = subjects.FEDERATED_ROUND_STARTED
    type: Literal["federated.round.started"] = "federated.round.started"
    data: RoundAnnouncement


class UpdateSubmitted(Event):
    subject: ClassVar[str] = subjects.FEDERATED_UPDATE_SUBMITTED
    type: Literal["federated.update.submitted"] = "federated.update.submitted"
    data: UpdateReport


class UpdateRefused(Event):
    subject: ClassVar[str] = subjects.FEDERATED_UPDATE_REFUSED
    type: Literal["federated.update.refused"] = "federated.update.refused"
    data: UpdateRefusal


class RoundCompleted(Event):
    subject: ClassVar[str] = subjects.FEDERATED_ROUND_COMPLETED
    type: Literal["federated.round.completed"] = "federated.round.completed"
    data: RoundResult


class FederationCompleted(Event):
    subject: ClassVar[str] = subjects.FEDERATED_COMPLETED
    type: Literal["federated.completed"] = "federated.completed"
    data: FederationResult


class FederationFailed(Event):
    subject: ClassVar[str] = subjects.FEDERATED_FAILED
    type: Literal["federated.failed"] = "federated.failed"
    data: FederationFailure

    @classmethod
    def of(cls, request: FederationRequested, reason: str, round: int = 0) -> FederationFailed:
        """The federation's failure: one per federation (its id), whoever reports it (the coordinator,
        or the trainer's reaper when the coordinator died of it every time)."""
        failure = FederationFailure(
            federation_id=request.id, model_name=request.data.model_name, round=round, reason=reason
        )
        return cls(id=derive_id(request.id, "failed"), tenant=request.tenant, data=failure)
