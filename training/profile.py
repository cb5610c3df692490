"""The reference profile a version's manifest records: its training inputs and what it predicted on them."""

from __future__ import annotations

import numpy as np
import torch

from fermion.model_store.features import LOGITS, PREDICTION, PROBABILITIES, FeatureSchema
from fermion.model_store.profiles import Profile, build_profile, column_values

from .data import Dataset
from .loop import Trained

MAX_ROWS = 20_000


def reference_profile(ds: Dataset, trained: Trained) -> Profile:
    """Bins of the training features and the trained model's class frequencies on them (a sample of rows).

    A table's features are its columns by name (model_store.profiles.column_values); a regression
    records its predictions' bins instead of class frequencies.
    """
    if ds.schema is not None and ds.sample is not None:
        return _table_profile(ds, trained)
    rows = ds.x if len(ds.x) <= MAX_ROWS else ds.x[np.random.default_rng(0).choice(len(ds.x), MAX_ROWS, replace=False)]
    trained.module.eval()
    with torch.no_grad():
        predicted = trained.module(torch.from_numpy(rows)).argmax(dim=1).numpy()
    return build_profile(rows, predicted, len(ds.labels))


def _table_profile(ds: Dataset, trained: Trained) -> Profile:
    from .tables import encode, graph_inputs

    assert ds.schema is not None
    schema, sample = ds.schema, ds.sample
    feeds = {
        name: [None if v != v else v for v in a.reshape(-1).tolist()]
        for name, a in graph_inputs(schema, sample).items()
    }
    values = column_values(schema, feeds)
    out = answers(trained.module, schema, encode(schema, sample))
    if schema.task == "regression":
        return build_profile(values, None, 0, schema.names(), values=out["prediction"][:, 0])
    return build_profile(values, out["logits"].argmax(axis=1), len(schema.classes), schema.names())


def answers(module: torch.nn.Module, schema: FeatureSchema, x: np.ndarray) -> dict[str, np.ndarray]:
    """What the trainer says for encoded rows `x`, by graph output name (float32 steps, as the graph)."""
    with torch.no_grad():
        out = module.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    if schema.task == "classification":
        return {LOGITS: out.numpy(), PROBABILITIES: torch.softmax(out, dim=-1).numpy()}
    assert schema.target is not None
    std, mean = np.float32(schema.target.std), np.float32(schema.target.mean)
    return {PREDICTION: out.numpy() * std + mean}
