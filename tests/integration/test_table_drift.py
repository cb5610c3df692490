"""Drift for table models on the real stack: per-column requests sampled, judged by column name.

The served model takes one input per column (tests/helpers/tables.py); its reference profile is built
the way the trainer builds it (`model_store.profiles.column_values` on the training columns). The
inference function and the monitor are the processes of test_rollouts.py, with every row sampled.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from fermion.events import Bus, subjects
from fermion.events.monitoring import DriftDetected, DriftJudged
from fermion.model_store import Draft, Registry
from fermion.model_store.profiles import build_profile, column_values
from tests.helpers import FunctionProcess, wait_until
from tests.helpers.tables import PLANS, table_draft, table_onnx, table_schema
from tests.integration.test_rollouts import TENANT, _logged, env, inference, monitor, registry  # noqa: F401

pytestmark = pytest.mark.integration


def _columns(rng: np.random.Generator, n: int, age_shift: float = 0.0, plan: str | None = None) -> dict[str, list]:
    """Raw columns as a client sends them: ages (some blank), plan names, yes/no."""
    age = rng.normal(40 + age_shift, 10, size=n).round(1).tolist()
    return {
        "age": [None if rng.random() < 0.05 else a for a in age],
        "plan": [plan or PLANS[i] for i in rng.integers(0, len(PLANS), size=n)],
        "member": ["yes" if m else "no" for m in rng.random(n) < 0.4],
    }


def _register(store: Registry, name: str, task: str, rng: np.random.Generator) -> None:
    """A table model with the reference profile the trainer would record for it."""
    schema, graph = table_schema(task), table_onnx(task)
    cols = _columns(rng, 5000)
    feeds = {
        "age": np.asarray([[np.nan if a is None else a] for a in cols["age"]], np.float32),
        "plan": np.asarray([[p] for p in cols["plan"]], object),
        "member": np.asarray([[1.0 if m == "yes" else 0.0] for m in cols["member"]], np.float32),
    }
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    values = column_values(schema, cols)
    if task == "regression":
        profile = build_profile(values, None, 0, schema.names(), values=out["prediction"][:, 0])
    else:
        profile = build_profile(values, out["logits"].argmax(axis=1), len(schema.classes), schema.names())
    draft = table_draft(task).model_copy(update={"profile": profile.model_dump()})
    store.register(TENANT, name, {"model.onnx": graph}, Draft.model_validate(draft.model_dump()))
    store.set_alias(TENANT, name, "production", 1)


def _window(client: httpx.Client, name: str, rng: np.random.Generator, **shift: Any) -> None:
    """One drift window (500 rows) through `:predict`, ten requests of rows keyed by column name."""
    for _ in range(10):
        cols = _columns(rng, 50, **shift)
        rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
        r = client.post(f"/v1/models/{name}:predict", json={"instances": rows})
        assert r.status_code == 200, r.text


def _judged(process: FunctionProcess, name: str) -> int:
    return process.text().count(f" of {name} version 1:")


async def _reports(bus: Bus, name: str, kind: type, subject: str) -> list:
    return [e.data for e in await _logged(bus, subject, kind) if e.data.model_name == name]


@pytest.mark.parametrize("task", ["classification", "regression"])
async def test_a_table_model_with_shifted_columns_raises_an_alarm_naming_them(
    task: str,
    inference: httpx.Client,  # noqa: F811
    monitor: FunctionProcess,  # noqa: F811
    bus: Bus,
    registry: Registry,  # noqa: F811
) -> None:
    name = f"table-{task[:5]}"
    rng = np.random.default_rng(5)
    _register(registry, name, task, rng)

    _window(inference, name, rng)  # in distribution
    wait_until(lambda: _judged(monitor, name) >= 1, 30, "a calm window of the table model judged")
    (calm,) = await _reports(bus, name, DriftJudged, subjects.MODELS_DRIFT_JUDGED)
    assert calm.features == [] and set(calm.psi) == {"age", "plan", "member"}, calm
    assert calm.prediction_psi is not None and calm.rows == 500

    _window(inference, name, rng, age_shift=15.0, plan="pro")  # older customers, all on one plan
    wait_until(lambda: _judged(monitor, name) >= 2, 30, "the shifted window judged")
    deadline = time.monotonic() + 10
    while not (alarms := await _reports(bus, name, DriftDetected, subjects.MODELS_DRIFT_DETECTED)):
        assert time.monotonic() < deadline, "no drift_detected after the shifted window"
    assert alarms[0].features == ["age", "plan"], alarms[0]
    assert alarms[0].window == 2 and alarms[0].prediction_psi is not None
