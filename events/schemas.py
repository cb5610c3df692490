"""Event contracts: past-tense facts, each with an id, type, time, tenant and schema version.

Producers are strict (unknown fields are refused when an event is built in code);
consumers are tolerant (unknown fields from a newer producer are ignored on parse).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from . import cloudevent, subjects

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]|\.[a-z0-9_-])*\.?$"
"""Tenant, dataset and model names: lower-case, no slashes, no `..` (every dot is followed by another
character or ends the name), at most 63 characters. The registry holds paths to the same rule
(`fermion.model_store.check_name`); a test keeps the two in step."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def new_id() -> str:
    """A fresh event id (also the JetStream Nats-Msg-Id)."""
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every event payload: strict when built, tolerant when parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(BaseModel):
    """The envelope every event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    time: datetime = Field(default_factory=_now)
    tenant: Name = "default"
    schema_version: int = 1

    def to_json(self) -> bytes:
        """The event as bytes for the wire."""
        return self.model_dump_json().encode()


# --- payloads -----------------------------------------------------------------------------------


class DatasetRef(Payload):
    """Where a dataset lives in the object store, and what it is."""

    name: Name
    sha256: Sha256
    uri: str
    format: Literal["npz", "csv", "zip", "tar"]
    size: int = Field(ge=0)


class ImageContract(Payload):
    """What a picture becomes before the model sees it; recorded in the recipe and the manifest.

    Decoded (PNG or JPEG), EXIF-oriented, converted to `channels` (1: Pillow mode "L", 3: "RGB"),
    resized to `height` x `width` with `resize` (fermion.imaging, Pillow), then inside the exported
    graph: pixel values (0-255) x `scale`, minus `mean`, over `std`, per channel, laid out NCHW.
    `mean`/`std` left out of a recipe are fitted on the training split; the manifest records them.
    Left out altogether, the trainer infers size and channels from the archive's images.
    """

    height: int = Field(default=28, ge=4, le=1024)
    width: int = Field(default=28, ge=4, le=1024)
    channels: Literal[1, 3] = 1
    resize: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bilinear"
    scale: float = Field(default=1 / 255, gt=0)
    mean: list[float] | None = Field(default=None, min_length=1, max_length=3)
    std: list[float] | None = Field(default=None, min_length=1, max_length=3)

    @model_validator(mode="after")
    def _per_channel(self) -> ImageContract:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) != self.channels:
                raise ValueError(f"{name} needs one value per channel ({self.channels}); got {len(values)}")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError("std values must be positive")
        return self


class Augmentation(Payload):
    """Random changes to training pictures (never applied at evaluation or serving)."""

    crop_padding: int = Field(default=0, ge=0, le=64, description="pad by this many pixels, crop back at random")
    flip: bool = Field(default=False, description="mirror left-right with probability 0.5")
    rotation: float = Field(default=0.0, ge=0, le=180, description="rotate by up to this many degrees either way")


class Recipe(Payload):
    """How to train: the architecture and its hyper-parameters."""

    architecture: Name = "mlp"
    epochs: int = Field(default=20, ge=1, le=1000)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    batch_size: int = Field(default=64, ge=1, le=65536)
    label_column: str = Field(default="label", min_length=1, max_length=256)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    workers: int = Field(default=1, ge=1, le=64)
    """Data-parallel ranks (torch.distributed); `batch_size` is the global batch, split across them."""
    image: ImageContract | None = None
    """Image datasets (zip/tar archives of pictures): the contract; None infers it from the pictures."""
    augment: Augmentation | None = None


class Gate(Payload):
    """When a freshly registered version is promoted: a metric floor, and optionally no regression."""

    alias: Name = "production"
    metric: str = Field(default="macro_f1", min_length=1, max_length=64)
    minimum: float = 0.0
    not_worse_than_current: bool = True
    canary: list[int] = Field(default=[], max_length=10)
    """Weight steps (say [10, 50, 100]): a passing version is canaried against the incumbent, not swapped in."""
    bake_s: float = Field(default=300.0, ge=0, le=7 * 24 * 3600)


class TrainingRequest(Payload):
    """What a training job trains, on what, and how; `gate` promotes the result when it passes."""

    model_name: Name
    dataset: DatasetRef
    recipe: Recipe = Recipe()
    gate: Gate | None = None
    pipeline: str | None = None
    sweep: str | None = None


class SweepRequest(Payload):
    """Train `trials` variations of one recipe; with a `gate`, promote the best by `metric` through it."""

    model_name: Name
    dataset: DatasetRef
    trials: list[Recipe] = Field(min_length=1, max_length=64)
    metric: str = Field(default="macro_f1", min_length=1, max_length=64)
    gate: Gate | None = None


class ProgressReport(Payload):
    """One epoch of a job done."""

    job_id: str
    model_name: Name
    epoch: int
    epochs: int
    loss: float | None = None
    """None at epoch 0, the "started" report a worker sends when it takes the job."""
    metrics: dict[str, float] = {}
    resumed_at: int | None = None
    """Set on the report that says the job resumed from its checkpoint of this epoch."""
    workers: int | None = None
    restarts: int | None = None
    """Elastic restarts of a distributed job's group so far."""
    samples_per_s: list[float] = []
    """Training throughput of each rank in the epoch, rank 0 first."""


class TrainingResult(Payload):
    """A job registered a model version."""

    job_id: str
    model_name: Name
    version: int
    metrics: dict[str, float]
    duration_s: float


class FailureReport(Payload):
    """A job ended without a model, and why."""

    job_id: str
    model_name: str
    reason: str
    error: str
    retryable: bool = False


class CancelRequest(Payload):
    """Stop a job: before it starts, or at its next epoch."""

    job_id: str
    reason: str = "cancelled by request"


class ModelVersionRef(Payload):
    """A new immutable model version exists in the registry."""

    model_name: Name
    version: int
    uri: str
    sha256: Sha256
    job_id: str | None = None


class AliasMove(Payload):
    """An alias now points to a version."""

    model_name: Name
    alias: str
    version: int
    previous_version: int | None = None


class AuditRecord(Payload):
    """Who did (or was refused) what: alias moves, key creation and revocation, refused requests."""

    action: Literal["alias.moved", "alias.deleted", "key.created", "key.revoked", "request.refused"]
    principal: str
    """The acting key's id (never the key), or "local" where authentication is off."""
    principal_tenant: str
    target: str
    """What it acted on: `model@alias`, a key id, a route."""
    outcome: Literal["done", "refused"] = "done"
    reason: str = ""
    details: dict[str, str | int | None] = {}


# --- events -------------------------------------------------------------------------------------


class DatasetUploaded(Event):
    subject: ClassVar[str] = subjects.DATASETS_UPLOADED
    type: Literal["datasets.uploaded"] = "datasets.uploaded"
    data: DatasetRef


class TrainingRequested(Event):
    subject: ClassVar[str] = subjects.TRAINING_REQUESTED
    type: Literal["training.requested"] = "training.requested"
    data: TrainingRequest


class TrainingSweep(Event):
    subject: ClassVar[str] = subjects.TRAINING_SWEEP
    type: Literal["training.sweep"] = "training.sweep"
    data: SweepRequest


class TrainingProgress(Event):
    subject: ClassVar[str] = subjects.TRAINING_PROGRESS
    type: Literal["training.progress"] = "training.progress"
    data: ProgressReport


class TrainingCompleted(Event):
    subject: ClassVar[str] = subjects.TRAINING_COMPLETED
    type: Literal["training.completed"] = "training.completed"
    data: TrainingResult


class TrainingFailed(Event):
    subject: ClassVar[str] = subjects.TRAINING_FAILED
    type: Literal["training.failed"] = "training.failed"
    data: FailureReport


class TrainingCancel(Event):
    type: Literal["training.cancel"] = "training.cancel"
    data: CancelRequest

    @property
    def subject(self) -> str:  # type: ignore[override]
        return subjects.cancel(self.data.job_id)


class ModelPublished(Event):
    subject: ClassVar[str] = subjects.MODELS_PUBLISHED
    type: Literal["models.published"] = "models.published"
    data: ModelVersionRef


class ModelPromoted(Event):
    subject: ClassVar[str] = subjects.MODELS_PROMOTED
    type: Literal["models.promoted"] = "models.promoted"
    data: AliasMove


class AuditEvent(Event):
    type: Literal["audit"] = "audit"
    data: AuditRecord

    @property
    def subject(self) -> str:  # type: ignore[override]
        return subjects.audit(self.data.action)


# --- federated training (issue 18) -------------------------------------------------------------

PublicKeyHex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SignatureHex = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class FederationMember(Payload):
    """A participant (a tenant or a site) and the Ed25519 public key its updates are signed with."""

    id: Name
    public_key: PublicKeyHex


class Privacy(Payload):
    """Differential privacy on each update: clip the weight delta's L2 norm, add Gaussian noise."""

    clip_norm: float = Field(gt=0)
    noise_multiplier: float = Field(default=0.0, ge=0)
    """The noise's standard deviation, in units of clip_norm."""


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
    metrics: dict[str, float] = {}
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


class FederationResult(Payload):
    """A federation ended: after its last round, or early at its target accuracy."""

    federation_id: str
    model_name: Name
    rounds: int
    version: int
    metrics: dict[str, float]


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


AnyEvent = Annotated[
    DatasetUploaded
    | TrainingRequested
    | TrainingSweep
    | TrainingProgress
    | TrainingCompleted
    | TrainingFailed
    | TrainingCancel
    | ModelPublished
    | ModelPromoted
    | AuditEvent
    | FederationRequested  # federated training
    | RoundStarted
    | UpdateSubmitted
    | UpdateRefused
    | RoundCompleted
    | FederationCompleted
    | FederationFailed,
    Field(discriminator="type"),
]

E = TypeVar("E", bound=Event)
_any_event: TypeAdapter[Event] = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str, kind: type[E] | None = None) -> E | Event:
    """Parse an event from the wire, ignoring fields a newer producer added.

    With `kind`, the event must be of that type. Raises pydantic.ValidationError when malformed.
    Accepts the CloudEvents 1.0 envelope (events/cloudevent.py) and the previous one.
    """
    raw = cloudevent.unwrap(raw)
    if kind is not None:
        return kind.model_validate_json(raw, extra="ignore")
    return _any_event.validate_json(raw, extra="ignore")
