"""Batch scoring events: a registered model run over a stored table, its predictions written to the store.

A scoring job is queued like a training (`scoring.requested` on the jobs work queue, shared by the
scorers' durable consumer) and reports like one: `scoring.progress` per chunk, then
`scoring.completed` naming where the predictions are, or `scoring.failed`. The job id is the
request's event id.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from . import subjects
from .envelope import Event, Name, Payload
from .training import DatasetRef, FailureReport

ScoresFormat = Literal["parquet", "csv"]


class ScoringRequest(Payload):
    """What to score with, on what, and how the predictions are written."""

    model_name: Name
    version: int | None = Field(default=None, ge=1)
    alias: Name | None = None
    """Neither: the latest version. The ingest door pins `version` before the job is queued."""
    dataset: DatasetRef
    id_column: str | None = Field(default=None, min_length=1, max_length=256)
    """The column written beside each prediction; None: the row number (`row`)."""
    format: ScoresFormat = "parquet"
    chunk_rows: int = Field(default=65536, ge=1, le=1 << 20)

    @model_validator(mode="after")
    def _one_pointer(self) -> ScoringRequest:
        if self.version is not None and self.alias is not None:
            raise ValueError("name a version or an alias, not both")
        return self


class ScoringReport(Payload):
    """Rows scored so far."""

    job_id: str
    model_name: Name
    rows_done: int = Field(ge=0)
    rows: int | None = Field(default=None, ge=0)
    """The table's rows, when known (a Parquet footer, the upload's profile)."""


class ScoringResult(Payload):
    """A job wrote its predictions."""

    job_id: str
    model_name: Name
    version: int
    rows: int
    key: str
    """The predictions' object key in the store (`scores/{tenant}/{job_id}.{format}`)."""
    format: ScoresFormat
    duration_s: float


class ScoringRequested(Event):
    subject: ClassVar[str] = subjects.SCORING_REQUESTED
    type: Literal["scoring.requested"] = "scoring.requested"
    data: ScoringRequest


class ScoringProgress(Event):
    subject: ClassVar[str] = subjects.SCORING_PROGRESS
    type: Literal["scoring.progress"] = "scoring.progress"
    data: ScoringReport


class ScoringCompleted(Event):
    subject: ClassVar[str] = subjects.SCORING_COMPLETED
    type: Literal["scoring.completed"] = "scoring.completed"
    data: ScoringResult


class ScoringFailed(Event):
    subject: ClassVar[str] = subjects.SCORING_FAILED
    type: Literal["scoring.failed"] = "scoring.failed"
    data: FailureReport
