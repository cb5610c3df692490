"""Gaussian noise for differential privacy, drawn from the operating system's CSPRNG.

Noise that anyone can regenerate protects nothing, and a user-space generator (numpy's PCG64,
torch's Philox or MT19937), however well seeded, keeps a state that its outputs can give away.
Every draw here consumes fresh bytes of `os.urandom` (the kernel's CSPRNG: getrandom(2) on Linux),
turned into uniforms with 53 random mantissa bits and into normals by Box-Muller. No state is kept
between draws. (Floating-point Gaussian sampling leaks a little through the lowest bits of its
results, as every float mechanism does; the noise here is on weights summed over a round, not on
counts, where that attack bites.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

_MANTISSA = 2.0**-53


def secure_uniform(n: int) -> np.ndarray:
    """`n` uniforms in (0, 1], each from 64 fresh bits of the OS CSPRNG (53 of them kept)."""
    bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return (bits.astype(np.float64) + 1.0) * _MANTISSA


def secure_normal(shape: Sequence[int], std: float) -> np.ndarray:
    """Normal(0, std^2) noise of `shape`, float64, from the OS CSPRNG (Box-Muller)."""
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0 or std == 0:
        return np.zeros(shape, dtype=np.float64)
    half = (n + 1) // 2
    u1, u2 = secure_uniform(half), secure_uniform(half)
    radius = np.sqrt(-2.0 * np.log(u1))  # u1 in (0, 1]: never log(0)
    angle = 2.0 * np.pi * u2
    z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:n]
    return (z * std).reshape(shape)
