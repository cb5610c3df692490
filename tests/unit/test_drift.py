"""Drift statistics, the label ledger and the rollout verdict, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fermion.events.traffic import Sample
from fermion.functions.monitor.controller import Observed, judge
from fermion.functions.monitor.drift import Window, holm, ks_pvalue
from fermion.functions.monitor.drift import judge as judge_drift
from fermion.functions.monitor.ledger import Accuracy, Ledger
from fermion.model_store import Bounds, Rollout
from fermion.model_store.profiles import build_profile

FEATURES = 8


@pytest.fixture(scope="module")
def reference() -> tuple[np.random.Generator, object]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES))
    return rng, build_profile(x, (x[:, 0] > 0).astype(int), 2)


def test_in_distribution_windows_raise_no_alarm(reference) -> None:
    rng, profile = reference
    windows = [rng.normal(size=(500, FEATURES)) for _ in range(200)]
    alarms = sum(judge_drift(profile, x, (x[:, 0] > 0).astype(int)).alarm for x in windows)
    assert alarms == 0  # 200 windows x 8 features: Holm at 0.01 and PSI > 0.2 together


def test_shifted_features_are_named_in_one_window(reference) -> None:
    rng, profile = reference
    x = rng.normal(size=(500, FEATURES))
    x[:, [2, 5]] += 1.0
    verdict = judge_drift(profile, x, (x[:, 0] > 0).astype(int))
    assert verdict.drifted == ["f2", "f5"] and not verdict.prediction_drift
    assert verdict.psi["f2"] > 0.5 and verdict.ks_pvalue["f2"] < 1e-10


def test_prediction_drift_is_flagged(reference) -> None:
    rng, profile = reference
    x = rng.normal(size=(500, FEATURES))
    verdict = judge_drift(profile, x, np.ones(500, dtype=int))  # the model now predicts one class only
    assert verdict.prediction_drift and verdict.drifted == []


def test_ks_pvalue_and_holm() -> None:
    assert ks_pvalue(0.0, 500) == 1.0 and ks_pvalue(0.2, 500) < 1e-6 and 0.05 < ks_pvalue(0.05, 500) < 0.3
    assert holm({"a": 0.001, "b": 0.006, "c": 0.5}, 0.01) == {"a"}  # b needed 0.01/2
    assert holm({"a": 0.001, "b": 0.004}, 0.01) == {"a", "b"}


def test_a_window_judges_exactly_its_size_and_keeps_the_rest() -> None:
    window = Window(size=100)
    assert not window.add(np.zeros((60, 2)), np.zeros(60, dtype=int))
    assert window.add(np.ones((70, 2)), np.ones(70, dtype=int))
    x, p = window.take()
    assert (len(x), len(p), window.count, window.index) == (100, 100, 30, 1)


def test_samples_round_trip_as_float32() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    sample = Sample.model_validate_json(Sample.of("t", "m", 1, rows, [0, 1, 2]).model_dump_json())
    np.testing.assert_array_equal(sample.rows(), rows.astype(np.float64))


def test_labels_join_predictions_in_either_order() -> None:
    ledger = Ledger(capacity=10)
    ledger.predicted("t", "m", "r1", 1, "cat")
    ledger.labelled("t", "m", "r1", "cat")
    ledger.labelled("t", "m", "r2", "dog")  # before its prediction arrived
    ledger.predicted("t", "m", "r2", 2, "cat")
    assert (ledger.accuracy[("t", "m", 1)].ratio, ledger.accuracy[("t", "m", 2)].ratio) == (1.0, 0.0)


def _observed(requests: int, errors: int = 0, ms: float = 1.0) -> Observed:
    return Observed(requests=requests, errors=errors, latency_ms=[ms] * requests)


def _plan(bake_s: float = 10, started_s_ago: float = 0) -> Rollout:
    started = datetime.now(UTC) - timedelta(seconds=started_s_ago)
    return Rollout(canary=2, incumbent=1, bake_s=bake_s, step_started_at=started, bounds=Bounds(min_requests=20))


NO_LABELS = (Accuracy(), Accuracy())


def test_the_verdicts() -> None:
    now = datetime.now(UTC)
    assert judge(_plan(), _observed(5), _observed(100), NO_LABELS, now).action == "wait"
    waiting = judge(_plan(started_s_ago=20), _observed(5), _observed(100), NO_LABELS, now)
    assert waiting.action == "waiting" and "5 of the 20" in waiting.reason
    errors = judge(_plan(), _observed(30, errors=3), _observed(300), NO_LABELS, now)
    assert errors.action == "rollback" and "error ratio 0.100" in errors.reason
    slow = judge(_plan(), _observed(30, ms=50), _observed(300, ms=2), NO_LABELS, now)
    assert slow.action == "rollback" and "p99" in slow.reason
    worse = judge(_plan(), _observed(30), _observed(300), (Accuracy(40, 20), Accuracy(40, 39)), now)
    assert worse.action == "rollback" and "online accuracy 0.500" in worse.reason
    assert judge(_plan(), _observed(30), _observed(300), NO_LABELS, now).action == "wait"  # still baking
    assert judge(_plan(started_s_ago=20), _observed(30), _observed(300), NO_LABELS, now).action == "step"


def test_a_regressions_predicted_values_drift_against_their_bins() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 2))
    profile = build_profile(x, None, 0, ["a", "b"], values=100 + 20 * x[:, 0])
    calm = rng.normal(size=(500, 2))
    verdict = judge_drift(profile, calm, 100 + 20 * calm[:, 0])
    assert verdict.prediction_psi is not None and not verdict.alarm
    moved = judge_drift(profile, calm, 130 + 20 * calm[:, 0])  # the same inputs, values 1.5 std higher
    assert moved.prediction_drift and moved.drifted == []
