"""`all_finite`, the input check's NaN/infinity test: a Python sum for small arrays, numpy for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from fermion.functions.inference.protocol import SUMMED_ELEMENTS, all_finite

SIZES = [1, 64, SUMMED_ELEMENTS, SUMMED_ELEMENTS + 1, 10_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_any_nan_or_infinity_anywhere_is_found(size: int, dtype: type, bad: float | None) -> None:
    rng = np.random.default_rng(size)
    array = rng.normal(size=size).astype(dtype)
    if bad is None:  # both infinities: their sum is NaN, still not finite
        array[0], array[-1] = np.inf, -np.inf
    else:
        array[rng.integers(size)] = bad
    assert all_finite(array) is False
    assert all_finite(np.ones(size, dtype)) is True


def test_finite_values_whose_sum_overflows_are_finite() -> None:
    big = np.full((2, 3), np.finfo(np.float64).max, np.float64)  # their sum is inf; every value is finite
    assert all_finite(big) is True
    assert all_finite(-big) is True


@pytest.mark.parametrize("shape", [(0,), (0, 4), (), (1, 1, 8, 8)])
def test_any_shape_is_read_whole(shape: tuple[int, ...]) -> None:
    array = np.zeros(shape, np.float32)
    assert all_finite(array) is True
    if array.size:
        array.flat[-1] = np.nan
        assert all_finite(array) is False


def test_a_strided_view_is_read_as_viewed() -> None:
    strided = np.ones((4, 3), np.float32)
    strided[0, 1] = np.nan  # a column the view below skips
    assert all_finite(strided[:, ::2]) is True
    strided[3, 2] = np.inf  # one it keeps
    assert all_finite(strided[:, ::2]) is False
