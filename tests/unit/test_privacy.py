"""Federated privacy that can be stated: CSPRNG noise, and dp-accounting's RDP accountant (the real one)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from pydantic import ValidationError

from fermion.events.federation import Privacy
from fermion.functions.federated import accountant
from fermion.functions.federated.noise import secure_normal, secure_uniform
from fermion.functions.federated.weights import privatize


def test_secure_noise_is_gaussian_and_owes_nothing_to_any_seed() -> None:
    z = secure_normal((400, 500), std=2.0)
    assert z.shape == (400, 500) and z.dtype == np.float64
    assert abs(z.mean()) < 0.02 and z.std() == pytest.approx(2.0, rel=0.01)
    assert np.mean(np.abs(z) < 2.0) == pytest.approx(0.6827, abs=0.005)  # one sigma
    draws = []
    for _ in range(2):  # every user-space generator seeded alike: the noise still differs
        np.random.seed(0)
        torch.manual_seed(0)
        draws.append(secure_normal((64,), 1.0))
    assert not np.array_equal(draws[0], draws[1])
    u = secure_uniform(100_000)
    assert u.min() > 0 and u.max() <= 1 and abs(u.mean() - 0.5) < 0.01
    assert secure_normal((0, 3), 1.0).shape == (0, 3)


def test_privatize_draws_secure_noise_unless_a_test_seeds_it() -> None:
    base = {"w": np.zeros((50, 50), np.float32)}
    local = {"w": np.ones((50, 50), np.float32)}
    a, _ = privatize(local, base, {"w"}, clip_norm=1.0, noise_multiplier=1.0, seed=None)
    b, _ = privatize(local, base, {"w"}, clip_norm=1.0, noise_multiplier=1.0, seed=None)
    assert not np.array_equal(a["w"], b["w"])
    noise = a["w"].astype(np.float64) - 1.0 / 50  # the clipped update is 1/50 per coordinate
    assert noise.std() == pytest.approx(1.0, rel=0.05)


def test_the_rdp_accountant_composes_rounds_and_agrees_with_pld() -> None:
    privacy = Privacy(clip_norm=1.0, noise_multiplier=3.0, delta=1e-5)
    eps = [accountant.epsilon(privacy, r) for r in range(1, 9)]
    assert all(a < b for a, b in itertools.pairwise(eps))  # each round spends more
    assert eps[-1] < 8 * eps[0]  # RDP composes sub-linearly
    pld = pld_privacy_accountant.PLDAccountant()  # a second, tighter accountant as a check
    pld.compose(dp_event.GaussianDpEvent(privacy.noise_multiplier / 2), 8)
    assert pld.get_epsilon(1e-5) <= eps[-1] <= 1.5 * pld.get_epsilon(1e-5)
    assert accountant.epsilon(Privacy(clip_norm=1.0), 1) == math.inf  # clipping alone states nothing


def test_a_budget_allows_rounds_until_the_next_would_overspend() -> None:
    privacy = Privacy(clip_norm=1.0, noise_multiplier=3.0, epsilon=8.0, delta=1e-5)
    allowed = max(r for r in range(1, 50) if accountant.affordable(privacy, r))
    assert accountant.epsilon(privacy, allowed) <= 8 < accountant.epsilon(privacy, allowed + 1)
    last = accountant.ledger(privacy, allowed)
    assert last["epsilon_total"] <= 8 and last["budget_allows_next_round"] is False
    assert last["epsilon_after_next_round"] > 8 and last["epsilon_budget"] == 8 and last["delta"] == 1e-5
    assert accountant.ledger(privacy, 1)["budget_allows_next_round"] is True
    reason = accountant.refusal(privacy, allowed + 1)
    assert f"round {allowed + 1}" in reason and "over the budget of 8" in reason
    assert accountant.affordable(None, 1000) and accountant.affordable(Privacy(clip_norm=1.0, noise_multiplier=1), 99)
    with pytest.raises(ValidationError, match="needs noise"):
        Privacy(clip_norm=1.0, epsilon=8.0)
