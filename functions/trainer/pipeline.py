"""Dataset-triggered pipelines: each `datasets.uploaded` event that matches a rule requests a training.

Runs in the rule runner (rules.py) on the shared durable consumer `pipelines`, so every upload is
handled by one replica. The training request's id is derived from the rule and the dataset's
sha256: the same upload, seen twice, requests one training.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from pydantic import ValidationError

from fermion.events import (
    DatasetUploaded,
    Gate,
    Recipe,
    TrainingRequest,
    TrainingRequested,
    streams,
)
from fermion.model_store import Pipelines, RegistryError

from .rules import Rule, Unprocessable

log = logging.getLogger("fermion.pipelines")


class UploadRule(Rule[DatasetUploaded]):
    """Turns uploads into training requests by the rules in the object store."""

    durable = streams.PIPELINE_DURABLE
    stream = streams.EVENTS_STREAM
    schema = DatasetUploaded
    dlq_tag = "events"

    def __init__(self, pipelines: Pipelines) -> None:
        self.pipelines = pipelines

    async def requests(self, upload: DatasetUploaded) -> AsyncGenerator[TrainingRequested, None]:
        """One training per matching rule; an invalid rule dead-letters the upload once the others are out."""
        try:
            rules = await asyncio.to_thread(self.pipelines.matching, upload.tenant, upload.data.name)
        except RegistryError as exc:
            raise Unprocessable(f"{type(exc).__name__}: {exc}") from exc
        invalid: list[str] = []
        for rule in rules:
            try:
                request = TrainingRequest(
                    model_name=rule.model_name,
                    dataset=upload.data,
                    recipe=Recipe(**rule.recipe),
                    gate=Gate(**rule.gate) if rule.gate else None,
                    pipeline=rule.name,
                )
            except ValidationError as exc:
                invalid.append(f"pipeline rule {rule.name!r} is invalid: {exc}")
                continue
            job = f"{rule.name}.{upload.data.sha256[:40]}"
            yield TrainingRequested(id=job, tenant=upload.tenant, data=request)
            log.info("dataset %s matched pipeline %s: job %s", upload.data.name, rule.name, job)
        if invalid:
            raise Unprocessable("; ".join(invalid))
