"""Pipeline rules, kept in the object store: `pipelines/{tenant}/{rule}.json`.

A rule maps uploaded datasets (by name or name prefix), or drift alarms of its model (`on: drift`,
retraining on `dataset`), to a model, a training recipe and a promotion gate. The recipe and gate
are stored as plain data here; the event contracts validate them where they become a
`training.requested` event (and ingest's `PUT /v1/pipelines/{name}` before they are stored).
"""

from __future__ import annotations

import builtins
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .backends import ObjectStore
from .errors import IntegrityError, NotFound, ObjectNotFound
from .names import check_name


class PipelineNotFound(NotFound):
    """No rule of that name."""


class PipelineRule(BaseModel):
    """Datasets matching `dataset_prefix` train `model_name` with `recipe`, promoted through `gate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dataset_prefix: str = Field(
        min_length=1,
        max_length=63,
        description="upload rules: the dataset name or name prefix whose uploads trigger the rule; drift rules "
        "without `dataset`: the newest upload whose name starts with it is retrained on",
    )
    model_name: str = Field(description="the model trained and registered")
    recipe: dict[str, Any] = {}
    gate: dict[str, Any] | None = None
    on: Literal["upload", "drift"] = Field(
        default="upload",
        description="what triggers the rule: `upload`, an uploaded dataset matching `dataset_prefix`; `drift`, "
        "`models.drift_detected` for `model_name` (which retrains on `dataset`, or on the newest upload "
        "matching the prefix)",
    )
    dataset: str | None = Field(
        default=None, description="drift rules: the dataset retrained on (its newest upload); upload rules have none"
    )

    @model_validator(mode="after")
    def _trigger_fits(self) -> PipelineRule:
        if self.on == "upload" and self.dataset is not None:
            raise ValueError(
                f"an upload rule trains on the upload that matches dataset_prefix; dataset ({self.dataset!r}) "
                "names what a drift rule retrains on"
            )
        return self

    def matches(self, dataset_name: str) -> bool:
        """Whether an uploaded dataset of this name triggers the rule."""
        return self.on == "upload" and dataset_name.startswith(self.dataset_prefix)

    def matches_prefix(self, dataset_name: str) -> bool:
        """Whether a dataset's name has the rule's prefix, whatever triggers the rule."""
        return dataset_name.startswith(self.dataset_prefix)

    def retrains(self, model_name: str) -> bool:
        """Whether drift of `model_name` triggers the rule."""
        return self.on == "drift" and model_name == self.model_name


class Pipelines:
    """Create, list and remove rules."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def _key(tenant: str, name: str) -> str:
        return f"pipelines/{check_name('tenant', tenant)}/{check_name('pipeline', name)}.json"

    def put(self, tenant: str, rule: PipelineRule) -> None:
        """Create or replace a rule."""
        check_name("model", rule.model_name)
        self.store.put(self._key(tenant, rule.name), rule.model_dump_json(indent=2).encode())

    def remove(self, tenant: str, name: str) -> None:
        """Remove a rule; PipelineNotFound if there is none."""
        self.get(tenant, name)
        self.store.delete(self._key(tenant, name))

    def get(self, tenant: str, name: str) -> PipelineRule:
        """One rule."""
        try:
            raw, _ = self.store.get(self._key(tenant, name))
        except ObjectNotFound:
            raise PipelineNotFound(f"no pipeline rule {name!r} for tenant {tenant!r}") from None
        try:
            return PipelineRule.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"pipeline rule {name!r} is unreadable: {exc}") from exc

    def list(self, tenant: str) -> list[PipelineRule]:
        """Every rule of a tenant."""
        names = [
            f.removesuffix(".json")
            for f in self.store.children(f"pipelines/{check_name('tenant', tenant)}/")
            if f.endswith(".json")
        ]
        return [self.get(tenant, n) for n in names]

    def matching(self, tenant: str, dataset_name: str) -> builtins.list[PipelineRule]:  # `list` is a method here
        """The rules an upload of `dataset_name` triggers."""
        return [r for r in self.list(tenant) if r.matches(dataset_name)]
