"""A classic job (scikit-learn, XGBoost, LightGBM): fetch → fit → convert → parity → register.

The same fate as a torch job: the version is registered under the event's claim (so a redelivery
makes no second version) and signed by the registry; a graph that disagrees with the fitted
estimator on the held-out rows fails the job (ParityError) and is never registered.

A table (CSV, Parquet) gets the torch table models' contract: the estimator fits the schema's encoded
rows, its graph sits behind the same preparation (compile/classic_tables.py) and takes one input per
column, the manifest records `features`; parity is checked twice, the estimator's graph on the held-out
encoded rows and the whole graph on raw sampled rows (blanks and categories kept).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fermion.compile.classic import check_parity, to_onnx
from fermion.compile.classic_tables import check_table_parity, estimator_answers, on_table
from fermion.compile.validate import validate_onnx
from fermion.events import TrainingRequested
from fermion.model_store import Draft, Lineage, Manifest, Registry, Signature, TensorSpec, code_version
from fermion.model_store.profiles import Profile, build_profile, column_values
from fermion.training.classic import Fitted, fit
from fermion.training.data import Dataset
from fermion.training.errors import DatasetError, PermanentJobError
from fermion.training.loop import ProgressFn
from fermion.training.tables import encode, graph_inputs

from .data import fetch_dataset

PROFILE_ROWS = 20_000
PARITY_ROWS = 2_000


def run_classic_job(
    event: TrainingRequested, registry: Registry, *, on_epoch: ProgressFn | None = None, atol: float = 1e-4
) -> Manifest:
    """Fit, convert, verify and register the classic estimator the event's recipe names."""
    request = event.data
    dataset, recipe = request.dataset, request.recipe
    if f"datasets/{event.tenant}/" not in dataset.uri:
        raise DatasetError(f"dataset {dataset.uri} lies outside tenant {event.tenant!r}; a job reads only its own")
    if recipe.workers > 1 or recipe.distill is not None:
        raise PermanentJobError(f"{recipe.architecture!r} trains on one worker without a teacher")
    with tempfile.TemporaryDirectory(prefix="fermion-job-") as tmp:
        ds = fetch_dataset(event, registry, recipe, Path(tmp))

    def done(loss: float, metrics: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(1, 1, loss, metrics)

    fitted = fit(ds, recipe, done)
    try:
        graph = to_onnx(fitted.estimator, int(ds.x.shape[1]))
    except ImportError as exc:  # a trainer without the classic extra: retrying cannot help
        raise PermanentJobError(str(exc)) from exc
    report = _parity(ds, fitted, graph, atol)
    if ds.schema is not None:
        graph = on_table(graph, ds.schema)
        report["table_parity"] = _table_parity(ds, fitted, graph, atol)
    with tempfile.TemporaryDirectory(prefix="fermion-classic-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(graph)
        checked = validate_onnx(path)  # what a push must pass, so a served classic graph is a pushable one
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.inputs],
            outputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.outputs],
        ),
        labels=fitted.labels,
        features=ds.schema.model_dump() if ds.schema is not None else None,
        metrics=fitted.metrics,
        evaluation=fitted.evaluation,
        lineage=Lineage(
            training_event_id=event.id,
            dataset_sha256=dataset.sha256,
            dataset_uri=dataset.uri,
            recipe=recipe.model_dump(),
            code_version=code_version(),
        ),
        compile_report={
            "source": "classic",
            "estimator": _describe(fitted),
            "opset": checked.opset,
            "node_count": checked.node_count,
            **report,
            "train_seconds": round(fitted.duration_s, 3),
        },
        profile=_profile(ds, fitted).model_dump(),
    )
    return registry.register(event.tenant, request.model_name, checked.files, draft, event_id=event.id)


def _describe(fitted: Fitted) -> str:
    steps = getattr(fitted.estimator, "steps", None)
    return " → ".join(type(s).__name__ for _, s in steps) if steps else type(fitted.estimator).__name__


def _parity(ds: Dataset, fitted: Fitted, graph: bytes, atol: float) -> dict[str, dict[str, float]]:
    """The estimator's own graph against the estimator on the held-out rows (a classifier's; a regressor's below)."""
    if fitted.task == "regression":
        assert ds.schema is not None  # only a table has a regression
        feeds = {"input": fitted.x_test}
        report = check_table_parity(fitted.estimator, graph, fitted.x_test, feeds, "regression", atol=atol)
        return {"parity": report.as_dict()}
    return {"parity": check_parity(fitted.estimator, graph, fitted.x_test, atol=atol).as_dict()}


def _table_parity(ds: Dataset, fitted: Fitted, graph: bytes, atol: float) -> dict[str, float]:
    """The whole graph on raw sampled rows (blanks, categories, booleans as sent) against the estimator on them."""
    assert ds.schema is not None and ds.sample is not None
    rows = ds.sample.slice(0, PARITY_ROWS)
    x, feeds = encode(ds.schema, rows), graph_inputs(ds.schema, rows)
    return check_table_parity(fitted.estimator, graph, x, feeds, fitted.task, atol=atol).as_dict()


def _profile(ds: Dataset, fitted: Fitted) -> Profile:
    """The drift monitor's reference: the training features and what the estimator predicts on them."""
    if ds.schema is not None and ds.sample is not None:
        return _table_profile(ds, fitted)
    rows = ds.x
    if len(rows) > PROFILE_ROWS:
        rows = rows[np.random.default_rng(0).choice(len(rows), PROFILE_ROWS, replace=False)]
    predicted = np.asarray(fitted.estimator.predict_proba(rows)).argmax(axis=1)
    return build_profile(rows, predicted, len(ds.labels))


def _table_profile(ds: Dataset, fitted: Fitted) -> Profile:
    """A table's reference by column name, as the torch table models record it (training/profile.py)."""
    assert ds.schema is not None
    schema, sample = ds.schema, ds.sample
    feeds = graph_inputs(schema, sample)
    blanks_as_none = {n: [None if v != v else v for v in a.reshape(-1).tolist()] for n, a in feeds.items()}
    values = column_values(schema, blanks_as_none)
    out = estimator_answers(fitted.estimator, encode(schema, sample), fitted.task)
    if fitted.task == "regression":
        return build_profile(values, None, 0, schema.names(), values=out[:, 0])
    return build_profile(values, out.argmax(axis=1), len(schema.classes), schema.names())
