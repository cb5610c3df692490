"""Dataset and training events: what a job trains, on what and how, its progress, and how it ended."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from . import subjects
from .envelope import Event, Name, Payload, Sha256


class DatasetRef(Payload):
    """Where a dataset lives in the object store, and what it is."""

    name: Name
    sha256: Sha256
    uri: str
    format: Literal["npz", "csv", "parquet", "zip", "tar"]
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


TEACHER_REF = r"^[a-z0-9][a-z0-9._-]{0,62}(@[a-z0-9][a-z0-9._-]{0,62}|:[1-9][0-9]{0,9})?$"


class Distillation(Payload):
    """Train on a registered version's soft targets as well as the labels (knowledge distillation).

    The loss is alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(labels);
    the teacher runs under ONNX Runtime, so any registered version can teach. The ingest door pins
    `teacher` to NAME:VERSION before the job is queued.
    """

    teacher: str = Field(pattern=TEACHER_REF, description="NAME (its latest), NAME@ALIAS or NAME:VERSION")
    temperature: float = Field(default=4.0, gt=0, le=100)
    alpha: float = Field(default=0.7, ge=0, le=1)
    """The soft targets' share of the loss; 0 trains on the labels alone."""


ARCHITECTURE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}(:[a-z0-9][a-z0-9._-]{0,62})?$"
"""A name, or FAMILY:NAME (the classic estimators: `sklearn:logistic`); never a path or a subject wildcard."""


class Recipe(Payload):
    """How to train: the architecture and its hyper-parameters."""

    architecture: str = Field(default="mlp", pattern=ARCHITECTURE_PATTERN, max_length=127)
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
    hidden: int | None = Field(default=None, ge=1, le=4096)
    """Width knob of the built-in architectures (mlp: hidden, hidden/2 units; cnn: hidden, 2x hidden channels,
    4x hidden units; rescnn: channels; textbag: embedding size); None keeps each one's default."""
    distill: Distillation | None = None
    task: Literal["classification", "regression"] | None = None
    """Tables: what to learn; None infers it from the label (text, booleans, few integers: classification)."""

    @model_validator(mode="after")
    def _one_worker_distils(self) -> Recipe:
        if self.distill is not None and self.workers > 1:
            raise ValueError("a distillation trains on one worker; leave workers at 1")
        return self


LOWER_IS_BETTER = frozenset({"mse", "mae", "loss"})
"""Metrics where smaller is better (a regression's errors); every other metric is better higher."""


def better(metric: str, a: float, b: float) -> bool:
    """Whether score `a` of `metric` is strictly better than `b`."""
    return a < b if metric in LOWER_IS_BETTER else a > b


class Gate(Payload):
    """When a freshly registered version is promoted: a metric floor (or ceiling), and optionally no regression.

    For an error metric (mse, mae: `LOWER_IS_BETTER`) `maximum` is the bar and "not worse" means not higher.
    """

    alias: Name = Field(default="production", description="the alias a passing version is promoted to")
    metric: str = Field(default="macro_f1", min_length=1, max_length=64, description="the metric judged")
    minimum: float = Field(default=0.0, description="promote only at or above this")
    maximum: float | None = Field(default=None, description="promote only at or below this (mse, mae)")
    not_worse_than_current: bool = Field(default=True, description="never promote below the alias's version")
    canary: list[int] = Field(
        default=[],
        max_length=10,
        description="weight steps in percent (say [10, 50, 100]): a passing version is canaried against "
        "the incumbent, not swapped in; empty: swapped in",
    )
    bake_s: float = Field(default=300.0, ge=0, le=7 * 24 * 3600, description="seconds each canary step bakes")


class TrainingRequest(Payload):
    """What a training job trains, on what, and how; `gate` promotes the result when it passes."""

    model_name: Name
    dataset: DatasetRef
    recipe: Recipe = Recipe()
    gate: Gate | None = None
    pipeline: str | None = None
    sweep: str | None = None
    trial: bool = False
    """A sweep's trial: trained and recorded as a run, never registered (only the sweep's winner is)."""


SEARCHABLE = frozenset({"architecture", "epochs", "learning_rate", "batch_size", "hidden", "seed", "test_fraction"})


class ParamSpec(Payload):
    """One searched recipe field: `loguniform:1e-4:1e-1`, `uniform:0:1`, `int:5:30` or `choice:mlp,cnn`."""

    kind: Literal["loguniform", "uniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    choices: list[str | int | float] = Field(default=[], max_length=256)

    @classmethod
    def parse(cls, text: str) -> ParamSpec:
        """The spec a `KIND:ARGS` string names (ValueError, listing the kinds, when it names none)."""
        kind, _, rest = text.partition(":")
        if kind == "choice":
            return cls(kind="choice", choices=[_scalar(c) for c in rest.split(",") if c])
        low, _, high = rest.partition(":")
        if kind not in ("loguniform", "uniform", "int") or not low or not high:
            raise ValueError(f"{text!r}: expected loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,..")
        return cls(kind=kind, low=float(low), high=float(high))  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpec:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("choice needs at least one value")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.kind} needs low < high")
        elif self.kind == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


def _scalar(text: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class SweepRequest(Payload):
    """Search a recipe's space; with a `gate`, promote the best trial by `metric` through it.

    `grid` trains the explicit `trials`; `random` and `tpe` (Optuna's samplers) draw `n_trials`
    recipes from `space` over `base`. Trials report per-epoch progress; with `prune`, Optuna's
    median pruner stops those behind the median. Trials are runs: only the winner is registered.
    """

    model_name: Name
    dataset: DatasetRef
    trials: list[Recipe] = Field(default=[], max_length=64)
    metric: str = Field(default="macro_f1", min_length=1, max_length=64)
    gate: Gate | None = None
    search: Literal["grid", "random", "tpe"] = "grid"
    n_trials: int = Field(default=0, ge=0, le=64)
    space: dict[str, ParamSpec] = Field(default={}, max_length=len(SEARCHABLE))
    base: Recipe = Recipe()
    parallel: int = Field(default=4, ge=1, le=64, description="trials in flight at once")
    prune: bool = True

    @model_validator(mode="after")
    def _searchable(self) -> SweepRequest:
        if self.search == "grid" and not self.trials:
            raise ValueError("a grid sweep needs its trials")
        if self.search != "grid" and (not self.space or self.n_trials < 1):
            raise ValueError(f"a {self.search} search needs a space (--param) and n_trials >= 1")
        if unknown := sorted(set(self.space) - SEARCHABLE):
            raise ValueError(f"cannot search {unknown}; searchable recipe fields: {sorted(SEARCHABLE)}")
        for name, spec in self.space.items():  # every value the sampler may draw makes a valid recipe
            ends = spec.choices if spec.kind == "choice" else [spec.low, spec.high]
            for value in ends:
                value = int(value) if spec.kind == "int" and value is not None else value
                Recipe.model_validate({**self.base.model_dump(), name: value})
        return self

    @property
    def size(self) -> int:
        """How many trials the sweep trains."""
        return len(self.trials) if self.search == "grid" else self.n_trials


class ProgressReport(Payload):
    """One epoch of a job done."""

    job_id: str
    model_name: Name
    epoch: int
    epochs: int
    loss: float | None = None
    """None at epoch 0, the "started" report a worker sends when it takes the job."""
    val_loss: float | None = None
    """The held-out split's mean cross-entropy (the validation loss); None where not measured."""
    metrics: dict[str, float] = Field(default={})
    resumed_at: int | None = None
    """Set on the report that says the job resumed from its checkpoint of this epoch."""
    workers: int | None = None
    restarts: int | None = None
    """Elastic restarts of a distributed job's group so far."""
    samples_per_s: list[float] = Field(default=[])
    """Training throughput of each rank in the epoch, rank 0 first."""


class TrainingResult(Payload):
    """A job registered a model version (a sweep's trial ends with its metrics and no version)."""

    job_id: str
    model_name: Name
    version: int | None
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
