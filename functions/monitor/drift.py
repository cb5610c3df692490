"""Drift of served inputs and predictions against a version's reference profile, window by window.

Per feature, two views of the same binned window: the population stability index (how much the
mass moved between the reference's bins) and a Kolmogorov-Smirnov test of the window against the
reference distribution, evaluated at the bin edges (a lower bound of the KS statistic, so the
test is conservative). A feature has drifted when its PSI is over the threshold *and* its KS
p-value is significant after Holm's correction for testing every feature at once: PSI alone
flags noise on small windows, KS alone flags tiny shifts on large ones. Predictions drift when
the predicted-class frequencies' PSI is over the threshold (a regression's: its predicted values'
PSI against the binned predictions of its reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fermion.model_store.profiles import Profile

EPS = 1e-4


def psi(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    """Population stability index of observed counts against expected fractions (both per bin)."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    o = np.clip(observed_counts / max(observed_counts.sum(), 1), EPS, None)
    return float(np.sum((o - e) * np.log(o / e)))


def ks_statistic(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    """The largest gap between the reference's and the window's cumulative distributions at the bin edges."""
    reference = np.cumsum(expected)[:-1]
    window = np.cumsum(observed_counts)[:-1] / max(observed_counts.sum(), 1)
    return float(np.max(np.abs(window - reference))) if len(reference) else 0.0


def ks_pvalue(d: float, n: int) -> float:
    """P(D ≥ d) for a one-sample KS test on `n` values (Kolmogorov's limit with Stephens' correction)."""
    if d <= 0 or n <= 0:
        return 1.0
    root = math.sqrt(n)
    lam = (root + 0.12 + 0.11 / root) * d
    if lam < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def holm(pvalues: dict[str, float], alpha: float) -> set[str]:
    """The names whose p-values are significant at family-wise level `alpha` (Holm-Bonferroni)."""
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    significant: set[str] = set()
    for rank, (name, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - rank):
            break
        significant.add(name)
    return significant


@dataclass(frozen=True)
class Verdict:
    """One window's drift figures."""

    rows: int
    psi: dict[str, float]
    ks_pvalue: dict[str, float]
    drifted: list[str]
    prediction_psi: float | None
    prediction_drift: bool

    @property
    def alarm(self) -> bool:
        """Whether anything moved."""
        return bool(self.drifted) or self.prediction_drift


def judge(
    profile: Profile, x: np.ndarray, predicted: np.ndarray, *, psi_threshold: float = 0.2, alpha: float = 0.01
) -> Verdict:
    """Compare a window of inputs (rows by features) and predicted classes (a regression: values) with the reference."""
    psis: dict[str, float] = {}
    pvalues: dict[str, float] = {}
    for i, feature in enumerate(profile.features):
        counts = feature.counts(x[:, i])
        expected = np.asarray(feature.fractions)
        psis[feature.name] = round(psi(expected, counts), 6)
        pvalues[feature.name] = ks_pvalue(ks_statistic(expected, counts), len(x))
    significant = holm(pvalues, alpha)
    drifted = [f.name for f in profile.features if f.name in significant and psis[f.name] > psi_threshold]
    prediction_psi = None
    if profile.prediction is not None and len(predicted):  # a regression: its values against their bins
        counts = profile.prediction.counts(np.asarray(predicted, dtype=np.float64))
        prediction_psi = round(psi(np.asarray(profile.prediction.fractions), counts), 6)
    elif profile.classes and len(predicted):
        counts = np.bincount(predicted, minlength=len(profile.classes))[: len(profile.classes)]
        prediction_psi = round(psi(np.asarray(profile.classes), counts), 6)
    return Verdict(
        rows=len(x),
        psi=psis,
        ks_pvalue={k: float(f"{v:.3g}") for k, v in pvalues.items()},
        drifted=drifted,
        prediction_psi=prediction_psi,
        prediction_drift=prediction_psi is not None and prediction_psi > psi_threshold,
    )


@dataclass
class Window:
    """Sampled rows of one version, filled until there are enough to judge."""

    size: int
    rows: list[np.ndarray] = field(default_factory=list)
    predicted: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    index: int = 0
    """How many windows of this version were judged before this one."""

    def add(self, x: np.ndarray, predicted: np.ndarray) -> bool:
        """Add rows; True once the window is full."""
        self.rows.append(x)
        self.predicted.append(predicted)
        self.count += len(x)
        return self.count >= self.size

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The window's first `size` rows (the rest start the next window)."""
        x, p = np.concatenate(self.rows), np.concatenate(self.predicted)
        rest_x, rest_p = x[self.size :], p[self.size :]
        self.rows, self.predicted = ([rest_x], [rest_p]) if len(rest_x) else ([], [])
        self.count = len(rest_x)
        self.index += 1
        return x[: self.size], p[: self.size]
