"""Model weights as bytes, and what the aggregator does with them: FedAvg, trimmed mean, DP clipping.

Weights travel as a deterministic .npz (fixed zip timestamps, sorted names), so the same weights
always have the same sha256 and a retried create-only write finds its own bytes.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Mapping

import numpy as np

from .noise import secure_normal

State = dict[str, np.ndarray]
_EPOCH = (1980, 1, 1, 0, 0, 0)


class BadWeights(ValueError):
    """Bytes that are not weights, or weights that do not fit the model."""


def dumps(state: Mapping[str, np.ndarray]) -> bytes:
    """The weights as a deterministic .npz."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(state):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.asarray(state[name]).copy(order="C"), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH), arr.getvalue())
    return buf.getvalue()


def loads(data: bytes, like: Mapping[str, np.ndarray] | None = None) -> State:
    """Weights from .npz bytes; with `like`, the names, shapes and dtypes must match it."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            state = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BadWeights(f"not a weights file: {exc}") from exc
    if like is not None:
        if set(state) != set(like):
            raise BadWeights(f"weights name {sorted(set(state) ^ set(like))[:5]} do not match the model's")
        for name, arr in like.items():
            if state[name].shape != arr.shape or state[name].dtype != arr.dtype:
                raise BadWeights(
                    f"{name} is {state[name].dtype}{list(state[name].shape)}, not {arr.dtype}{list(arr.shape)}"
                )
            if state[name].dtype.kind == "f" and not np.all(np.isfinite(state[name])):
                raise BadWeights(f"{name} holds NaN or infinite values")
    return state


def fedavg(updates: Iterable[tuple[State, int]]) -> State:
    """The average of the updates weighted by their number of examples (integer tensors: the first's)."""
    pairs = list(updates)
    total = sum(n for _, n in pairs)
    out: State = {}
    for name, first in pairs[0][0].items():
        if first.dtype.kind != "f":
            out[name] = first
            continue
        acc = np.zeros(first.shape, dtype=np.float64)
        for state, n in pairs:
            acc += state[name].astype(np.float64) * (n / total)
        out[name] = acc.astype(first.dtype)
    return out


def trimmed_mean(states: list[State], fraction: float) -> State:
    """The coordinate-wise mean after dropping the `fraction` largest and smallest values (robust to outliers)."""
    m = len(states)
    k = min(math.floor(m * fraction), (m - 1) // 2)
    out: State = {}
    for name, first in states[0].items():
        if first.dtype.kind != "f":
            out[name] = first
            continue
        stacked = np.sort(np.stack([s[name] for s in states]), axis=0)
        out[name] = stacked[k : m - k].mean(axis=0).astype(first.dtype)
    return out


def privatize(
    local: State, global_: State, trainable: set[str], clip_norm: float, noise_multiplier: float, seed: int | None
) -> tuple[State, float]:
    """Clip the update (local - global) of the trainable tensors to `clip_norm` in L2, add Gaussian noise.

    Returns the privatised weights and the update's norm before clipping. The noise comes from the
    OS CSPRNG (noise.py); `seed` is for tests only: noise from a known seed can be regenerated and
    subtracted.
    """
    delta = {k: local[k].astype(np.float64) - global_[k] for k in trainable}
    norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in delta.values())))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    rng = np.random.default_rng(seed) if seed is not None else None
    std = noise_multiplier * clip_norm
    out = dict(local)
    for k, d in delta.items():
        noise = rng.normal(0.0, std, size=d.shape) if rng is not None else secure_normal(d.shape, std)
        noisy = d * scale + noise
        out[k] = (global_[k] + noisy).astype(local[k].dtype)
    return out, norm
