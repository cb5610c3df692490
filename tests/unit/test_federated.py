"""Federated pieces on their own: weights files, aggregation, privacy, the signed message, the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from fermion.events import DatasetRef
from fermion.events.federation import FederationMember, FederationSpec, update_message
from fermion.functions.federated.weights import BadWeights, dumps, fedavg, loads, privatize, trimmed_mean
from fermion.model_store.signing import BadSignature, SigningKey, verify

REPO = Path(__file__).resolve().parents[2]


def _state(v: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), v, np.float32), "b": np.full(3, v, np.float32), "steps": np.array(7, np.int64)}


def test_weights_files_are_deterministic_and_checked() -> None:
    a = dumps(_state(1.0))
    assert a == dumps(_state(1.0))  # same weights, same sha256: a retried create-only write finds its own bytes
    assert loads(a, _state(0.0))["w"][0, 0] == 1.0
    with pytest.raises(BadWeights, match="do not match"):
        loads(dumps({"w": _state(1.0)["w"]}), _state(0.0))
    with pytest.raises(BadWeights, match="not"):
        loads(dumps({**_state(1.0), "w": np.zeros((3, 2), np.float32)}), _state(0.0))
    with pytest.raises(BadWeights, match="NaN"):
        loads(dumps({**_state(1.0), "b": np.full(3, np.nan, np.float32)}), _state(0.0))
    with pytest.raises(BadWeights):
        loads(b"not a zip", _state(0.0))


def test_fedavg_weights_by_examples_and_trimmed_mean_drops_outliers() -> None:
    avg = fedavg([(_state(1.0), 100), (_state(4.0), 200)])
    assert np.allclose(avg["w"], 3.0) and avg["w"].dtype == np.float32 and avg["steps"] == 7
    robust = trimmed_mean([_state(1.0), _state(2.0), _state(1000.0)], 0.34)
    assert np.allclose(robust["w"], 2.0)  # one trimmed from each end: the poisoned participant is gone


def test_privacy_clips_the_update_and_adds_noise_to_trained_tensors_only() -> None:
    base, local = _state(0.0), _state(1.0)
    out, norm = privatize(local, base, {"w", "b"}, clip_norm=0.5, noise_multiplier=0.0, seed=0)
    assert norm == pytest.approx(3.0)  # sqrt(9 ones)
    delta = np.concatenate([out["w"].ravel(), out["b"].ravel()])
    assert np.linalg.norm(delta) == pytest.approx(0.5, rel=1e-5)
    noisy, _ = privatize(local, base, {"w"}, clip_norm=0.5, noise_multiplier=1.0, seed=0)
    assert not np.allclose(noisy["w"], out["w"]) and np.array_equal(noisy["b"], local["b"])


def test_an_update_signature_covers_every_field_that_decides_its_weight() -> None:
    key = SigningKey.generate()
    msg = update_message("fed", 3, "site-a", "a" * 64, 100, {"loss": 0.1})
    sig = key.sign(msg)
    verify(key.public_key, msg, sig)
    for changed in (
        update_message("fed", 3, "site-a", "a" * 64, 100_000, {"loss": 0.1}),
        update_message("fed", 4, "site-a", "a" * 64, 100, {"loss": 0.1}),
        update_message("fed", 3, "site-b", "a" * 64, 100, {"loss": 0.1}),
    ):
        with pytest.raises(BadSignature):
            verify(key.public_key, changed, sig)


def test_a_spec_whose_quorum_cannot_be_met_is_refused() -> None:
    holdout = DatasetRef(name="h", sha256="0" * 64, uri="file:///x", format="npz", size=1)
    member = FederationMember(id="site-a", public_key="0" * 64)
    with pytest.raises(ValidationError, match="min_updates"):
        FederationSpec(
            model_name="m", labels=["a", "b"], n_features=4, participants=[member], min_updates=2, holdout=holdout
        )
    with pytest.raises(ValidationError, match="unique"):
        FederationSpec(model_name="m", labels=["a", "b"], n_features=4, participants=[member, member], holdout=holdout)


def test_federated_reaches_only_into_the_trainers_recipes() -> None:
    allowed = {"architectures", "train", "consumer", "job"}
    for path in (REPO / "functions" / "federated").glob("*.py"):
        text = path.read_text()
        assert "functions.inference" not in text and "functions.ingest" not in text, path.name
        for line in text.splitlines():
            if "functions.trainer." in line:
                module = line.split("functions.trainer.")[1].split()[0]
                assert module in allowed, f"{path.name} imports trainer module {module}"


def test_fedprox_keeps_local_training_near_the_global_weights() -> None:
    import torch

    from fermion.events import Recipe
    from fermion.functions.federated.model import build_module, load_state, local_train, state_of

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    recipe = Recipe(architecture="mlp", epochs=3, learning_rate=1e-2, batch_size=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = state_of(build_module(recipe, x, 2))
        drift = {}
        for mu in (0.0, 100.0):
            module = load_state(build_module(recipe, x, 2), start)
            local_train(module, x, y, recipe, proximal_mu=mu, seed=0)
            after = state_of(module)
            drift[mu] = sum(float(np.sum((after[k] - start[k]) ** 2)) for k in start)
    finally:
        torch.set_num_threads(threads)
    assert drift[100.0] < drift[0.0] / 2, drift
