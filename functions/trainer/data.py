"""A job's dataset: fetched from the store into a temporary folder and loaded as its recipe asks."""

from __future__ import annotations

from pathlib import Path

from fermion.events import TrainingRequested
from fermion.events.training import Recipe
from fermion.model_store import DatasetStore, Registry
from fermion.training.data import Dataset, load_dataset


def fetch_dataset(event: TrainingRequested, registry: Registry, recipe: Recipe, folder: Path) -> Dataset:
    """The event's dataset, fetched into `folder` and loaded with the recipe's label, task and split."""
    dataset = event.data.dataset
    path = DatasetStore(registry.store).fetch(
        event.tenant, dataset.name, dataset.sha256, dataset.format, folder / f"data.{dataset.format}"
    )
    return load_dataset(
        path,
        dataset.format,
        recipe.label_column,
        recipe.image,
        task=recipe.task,
        test_fraction=recipe.test_fraction,
        seed=recipe.seed,
    )
