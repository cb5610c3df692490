"""Dynamic batching: concurrent requests merged into one run and split back, each getting its own rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fermion.functions.inference import batching
from fermion.functions.inference.batching import Batcher
from fermion.functions.inference.errors import BadRequest
from fermion.functions.inference.runtime import LoadedModel, ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import LocalDirStore, Registry
from tests.helpers import linear_draft, linear_onnx


@pytest.fixture
def model(tmp_path: Path) -> LoadedModel:
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    registry.register("default", "lin", {"model.onnx": linear_onnx(n_in=4, n_out=3)}, linear_draft())
    return ModelRuntime(registry, InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])).get(
        ModelRef("lin")
    )


async def test_concurrent_requests_share_runs_and_get_their_own_rows(model: LoadedModel) -> None:
    batcher = Batcher(model, max_batch_size=32, max_delay_ms=0)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(20)]
    results = await asyncio.gather(*(batcher.run({"input": x}, None) for x in inputs))
    for x, out in zip(inputs, results, strict=True):
        np.testing.assert_allclose(out["logits"], model.run({"input": x})["logits"], rtol=1e-6)
    assert batcher.requests == 20
    assert batcher.batches < 20  # they were merged
    assert batcher.idle


async def test_batches_respect_the_size_limit_and_delay(model: LoadedModel) -> None:
    batcher = Batcher(model, max_batch_size=4, max_delay_ms=5)
    x = np.ones((2, 4), np.float32)
    results = await asyncio.gather(*(batcher.run({"input": x}, None) for _ in range(6)))
    assert all(r["logits"].shape == (2, 3) for r in results)
    assert batcher.batches == 3  # 2 + 2 rows per run
    assert not batcher.batchable({"input": np.ones((5, 4), np.float32)})  # bigger than a batch: runs alone


async def test_a_bad_request_fails_alone(model: LoadedModel) -> None:
    batcher = Batcher(model, max_batch_size=32, max_delay_ms=0)
    good = batcher.run({"input": np.ones((1, 4), np.float32)}, None)
    with pytest.raises(BadRequest, match="must have shape"):
        await batcher.run({"input": np.ones((1, 5), np.float32)}, None)
    assert (await good)["logits"].shape == (1, 3)


async def test_under_load_a_batch_waits_to_fill_to_the_previous_size(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def staggered(batcher: Batcher, n: int, gap_s: float) -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(gap_s * i)
            await batcher.run({"input": np.ones((1, 4), np.float32)}, None)

        await asyncio.gather(*(one(i) for i in range(n)))

    monkeypatch.setattr(batching, "FILL_WAIT_S", 0.5)  # a wide window, so the test does not race the clock
    alone = Batcher(model, max_batch_size=32, max_delay_ms=0)
    await staggered(alone, 6, 0.02)
    assert alone.batches == 6  # one at a time: nothing to wait for, each runs at once

    loaded = Batcher(model, max_batch_size=32, max_delay_ms=0)
    loaded._last_rows, loaded._last_run_s = 6, 1.0  # the previous batch had six requests and took a second
    await staggered(loaded, 6, 0.002)  # answered together, they come back a little spread out
    assert loaded.batches == 1  # the first waited for the other five
