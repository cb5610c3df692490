"""What a federation's noise buys: (epsilon, delta) per round and in total, from dp-accounting's RDP accountant.

The guarantee is participant-level, against anyone who sees a participant's update (the
coordinator included): neighbouring inputs are the participant's whole local dataset replaced by
any other. Each participant clips its update (local minus global weights) to `clip_norm` in L2,
so two updates lie at most 2 x clip_norm apart, and adds Normal(0, (noise_multiplier x clip_norm)^2)
to every coordinate: a Gaussian mechanism with noise multiplier noise_multiplier / 2 per round.
Local training before the clip is free (post-processing); every participant is asked in every
round, so there is no subsampling to amplify the guarantee, and the rounds compose.
"""

from __future__ import annotations

import math
from typing import Any

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from fermion.events.federation import Privacy

ACCOUNTANT = "dp-accounting RDP (Gaussian mechanism, composed per round)"
ADJACENCY = "one participant's local data replaced (L2 sensitivity 2 x clip_norm)"


def epsilon(privacy: Privacy, rounds: int) -> float:
    """The epsilon at `privacy.delta` after `rounds` rounds; inf without noise."""
    if privacy.noise_multiplier <= 0:
        return math.inf
    if rounds <= 0:
        return 0.0
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.GaussianDpEvent(privacy.noise_multiplier / 2), rounds)
    return float(accountant.get_epsilon(privacy.delta))


def affordable(privacy: Privacy | None, rounds: int) -> bool:
    """Whether `rounds` rounds stay within the federation's epsilon budget (always, without one)."""
    return privacy is None or privacy.epsilon is None or epsilon(privacy, rounds) <= privacy.epsilon


def ledger(privacy: Privacy, rounds: int) -> dict[str, Any]:
    """What round `rounds` records of the privacy spent: that round alone and everything so far."""
    one, total, then = epsilon(privacy, 1), epsilon(privacy, rounds), epsilon(privacy, rounds + 1)
    return {
        "accountant": ACCOUNTANT,
        "adjacency": ADJACENCY,
        "delta": privacy.delta,
        "epsilon_round": None if math.isinf(one) else round(one, 6),
        "epsilon_total": None if math.isinf(total) else round(total, 6),
        "epsilon_budget": privacy.epsilon,
        "rounds_accounted": rounds,
        "epsilon_after_next_round": None if math.isinf(then) else round(then, 6),
        "budget_allows_next_round": affordable(privacy, rounds + 1),
    }


def refusal(privacy: Privacy, rounds: int) -> str:
    """Why round `rounds` is not run: it would overspend the budget."""
    return (
        f"privacy budget spent: round {rounds} would bring epsilon to {epsilon(privacy, rounds):.3f} "
        f"(delta {privacy.delta:g}), over the budget of {privacy.epsilon:g}; "
        f"{rounds - 1} round(s) spent epsilon {epsilon(privacy, rounds - 1):.3f}"
    )
