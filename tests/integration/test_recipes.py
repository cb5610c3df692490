"""A user's architecture, installed as a package with a `fermion.recipes` entry point, trains from an event."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fermion.events import Bus, DatasetRef, Recipe, TrainingCompleted, TrainingRequest, TrainingRequested, parse_event
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, StoreSettings, open_registry
from tests.helpers import Trainer

pytestmark = pytest.mark.integration


def test_an_installed_recipe_trains_from_a_training_requested_event(tmp_path: Path, recipe_site: Path) -> None:
    site = recipe_site
    home = tmp_path / "home"
    with NatsServer(tmp_path / "nats") as nats_server:
        env = {
            **os.environ,
            "FERMION_HOME": str(home),
            "FERMION_NATS_URL": nats_server.url,
            "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        }
        trainer = Trainer(env, tmp_path / "trainer.log").start()
        try:
            asyncio.run(_train_with_recipe(nats_server.url, home))
        finally:
            trainer.stop()


async def _train_with_recipe(nats_url: str, home: Path) -> None:
    registry = open_registry(StoreSettings(home=home))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = (rng.normal(size=(200, 5)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stored = DatasetStore(registry.store).put("default", "toy", buf.getvalue(), "npz")
    ref = DatasetRef(name="toy", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    bus = await Bus.connect(nats_url)
    try:
        await bus.provision()
        since = datetime.now(UTC) - timedelta(seconds=1)
        event = TrainingRequested(
            data=TrainingRequest(model_name="toy", dataset=ref, recipe=Recipe(architecture="wide_linear", epochs=5))
        )
        await bus.publish(event)
        events = bus.watch("fermion.training.>", since=since)
        async with asyncio.timeout(90):
            async for raw in events:
                done = parse_event(raw)
                if isinstance(done, TrainingCompleted) and done.data.job_id == event.id:
                    break
                assert done.type != "training.failed", done
        await events.aclose()
    finally:
        await bus.close()
    manifest = registry.manifest("default", "toy", done.data.version)
    assert manifest.lineage.recipe["architecture"] == "wide_linear"
    assert manifest.metrics["accuracy"] >= 0.9
    assert "fp32" in manifest.variants
