"""Event-path latencies on a real nats-server with one trainer process:

- `training.requested` published → the worker starting the job (its epoch-0 "started" report);
- the version registered (manifest `created_at`) → `models.promoted` published by the gate.

Jobs run one after another (a tiny dataset, one epoch) so queueing does not pollute the figures;
timestamps come from the events themselves, all stamped on this machine's clock.

    .venv/bin/python bench/event_latency.py [--jobs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fermion.events import (
    Bus,
    DatasetRef,
    Gate,
    ModelPromoted,
    Recipe,
    TrainingCompleted,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    parse_event,
)
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, StoreSettings, open_registry


async def measure(nats_url: str, home: Path, jobs: int) -> tuple[list[float], list[float]]:
    registry = open_registry(StoreSettings(home=home))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    buf = io.BytesIO()
    np.savez(buf, x=(rng.normal(size=(100, 4)) + y[:, None] * 3).astype(np.float32), y=y)
    stored = DatasetStore(registry.store).put("default", "toy", buf.getvalue(), "npz")
    ref = DatasetRef(name="toy", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    bus = await Bus.connect(nats_url)
    await bus.provision()
    to_start, to_promoted = [], []
    try:
        for i in range(jobs + 1):  # the first warms the trainer (imports, first session): not counted
            event = TrainingRequested(
                data=TrainingRequest(
                    model_name="toy",
                    dataset=ref,
                    recipe=Recipe(architecture="mlp", epochs=1),
                    gate=Gate(alias="production", metric="accuracy", minimum=0.0, not_worse_than_current=False),
                )
            )
            events = bus.watch("fermion.>", since=event.time)
            await bus.publish(event)
            started = promoted = None
            version = None
            async with asyncio.timeout(60):
                async for raw in events:
                    e = parse_event(raw)
                    if isinstance(e, TrainingProgress) and e.data.job_id == event.id and e.data.epoch == 0:
                        started = e.time
                    elif isinstance(e, TrainingCompleted) and e.data.job_id == event.id:
                        version = e.data.version
                    elif isinstance(e, ModelPromoted) and e.id == f"{event.id}.promoted":
                        promoted = e.time
                    if started and promoted and version:
                        break
            await events.aclose()
            if i == 0:
                continue
            registered = registry.manifest("default", "toy", version).created_at
            to_start.append((started - event.time).total_seconds())
            to_promoted.append((promoted - registered).total_seconds())
    finally:
        await bus.close()
    return to_start, to_promoted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp, NatsServer(Path(tmp) / "nats") as nats:
        env = {**os.environ, "FERMION_HOME": tmp, "FERMION_NATS_URL": nats.url}
        with open(Path(tmp) / "trainer.log", "wb") as log:
            trainer = subprocess.Popen(
                [sys.executable, "-m", "fermion.functions.trainer"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            to_start, to_promoted = asyncio.run(measure(nats.url, Path(tmp), args.jobs))
        finally:
            trainer.terminate()
            trainer.wait(15)
    for title, xs in (
        ("training.requested -> worker starts the job", to_start),
        ("version registered -> models.promoted", to_promoted),
    ):
        ms = sorted(x * 1000 for x in xs)
        print(
            f"{title:45s} median {statistics.median(ms):7.1f} ms   p90 {ms[int(len(ms) * 0.9) - 1]:7.1f} ms   "
            f"min {ms[0]:6.1f} ms   ({len(ms)} jobs)"
        )


if __name__ == "__main__":
    main()
