"""How each run happens: inline on the event loop, merged into a batch, or alone in a worker thread.

One `Lane` per loaded model (tenant, name, version, variant) keeps what the choice needs: the
model's recent cost per row of a request run alone, and the model's batcher, made on first use.

Memory is bounded by rows: a request over `max_rows_per_request` is refused (413), one over
`max_rows_per_run` runs in chunks of that many rows (ONNX Runtime's arena is then shrunk, so the
chunk's peak is given back), and a merged batch never exceeds `max_batch_size` rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .batching import Batcher
from .errors import PayloadTooLarge
from .runtime import INLINE_ELEMENTS, INLINE_RUN_MS, LoadedModel, rows_of
from .settings import InferenceSettings

Key = tuple[str, str, int, str]
OnRun = Callable[[str, int, float, Iterable[float]], None]
"""Told (model name, rows, run seconds, each request's wait) of every session run: the metrics."""


@dataclass
class Lane:
    """One model's routing state."""

    model: LoadedModel
    row_ms: float = 0.0
    """Recent cost per row of a request run alone (an exponential average)."""
    batcher: Batcher | None = None

    def observe(self, rows: int, seconds: float) -> None:
        """Fold a run of one request alone into `row_ms` (merged runs are cheaper per row: never counted)."""
        self.row_ms = 0.8 * self.row_ms + 0.2 * seconds * 1000 / max(rows, 1)


class Scheduler:
    """Routes runs by cost: a model whose rows take microseconds is never batched."""

    def __init__(
        self,
        settings: Callable[[], InferenceSettings],
        loaded: Callable[[], list[LoadedModel]],
        *,
        batching: bool = True,
        on_run: OnRun | None = None,
    ) -> None:
        self._settings = settings
        self._on_run = on_run
        self._loaded = loaded
        self._batching = batching
        self._lanes: dict[Key, Lane] = {}

    def lane(self, model: LoadedModel) -> Lane:
        """The model's lane (a reloaded session gets a fresh one; unloaded sessions' lanes are dropped)."""
        key = (model.manifest.tenant, model.name, model.version, model.variant)
        lane = self._lanes.get(key)
        if lane is None or lane.model is not model:
            live = {id(m) for m in self._loaded()}
            self._lanes = {k: v for k, v in self._lanes.items() if id(v.model) in live}
            lane = self._lanes[key] = Lane(model)
        return lane

    async def run(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], wanted: list[str] | None
    ) -> dict[str, np.ndarray]:
        """The model's outputs for `feeds`, computed wherever is cheapest right now.

        Cheap is the model's recent cost per row when run alone, times this request's rows: a batch
        would only add a thread hop and a wait, and a batched model's merged runs never make it look
        cheap.
        """
        lane, rows = self.lane(model), rows_of(feeds)
        limit = self._settings().max_rows_per_request
        if rows > limit:
            raise PayloadTooLarge(
                f"the request has {rows} rows; the limit is {limit} per request (FERMION_MAX_ROWS_PER_REQUEST): "
                "split it into several requests"
            )
        if lane.row_ms * rows < INLINE_RUN_MS and sum(a.size for a in feeds.values()) <= INLINE_ELEMENTS:
            return self._timed(lane, feeds, wanted, rows)  # a thread hop would cost more than the run itself
        batcher = self._batcher(lane)
        if batcher is not None and batcher.batchable(feeds):
            return await batcher.run(feeds, wanted)
        return await asyncio.to_thread(self._timed, lane, feeds, wanted, rows)

    def _timed(
        self, lane: Lane, feeds: dict[str, np.ndarray], wanted: list[str] | None, rows: int
    ) -> dict[str, np.ndarray]:
        """Run one request alone (in chunks of `max_rows_per_run` rows when it has more) and time it."""
        settings = self._settings()
        step = settings.max_rows_per_run
        started = time.perf_counter()
        if rows <= step or not _splittable(lane.model, feeds, rows):
            out = lane.model.run(feeds, wanted)
        else:
            parts = [
                lane.model.run(
                    {name: array[i : i + step] for name, array in feeds.items()},
                    wanted,
                    shrink=settings.arena_shrinkage and i + step >= rows,  # the last chunk gives the peak back
                )
                for i in range(0, rows, step)
            ]
            out = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        seconds = time.perf_counter() - started
        lane.observe(rows, seconds)
        if self._on_run is not None:
            self._on_run(lane.model.name, rows, seconds, (0.0,))
        return out

    def _batcher(self, lane: Lane) -> Batcher | None:
        """The lane's batcher if batching is on for this model (settings, per-model overrides)."""
        settings = self._settings()
        options = {
            "batching": float(settings.batching and self._batching),
            "max_batch_size": settings.max_batch_size,
            "max_delay_ms": settings.max_delay_ms,
            **settings.batch_overrides.get(lane.model.name, {}),
        }
        if not options["batching"]:
            return None
        if lane.batcher is None:
            lane.batcher = Batcher(
                lane.model,
                max_batch_size=int(options["max_batch_size"]),
                max_delay_ms=float(options["max_delay_ms"]),
                on_alone=lane.observe,
                on_run=self._on_run,
            )
        return lane.batcher


def _splittable(model: LoadedModel, feeds: dict[str, np.ndarray], rows: int) -> bool:
    """Whether the request's rows can run apart: every input's first axis is the dynamic batch axis."""
    dynamic = all(shape and shape[0] is None for _, shape in model.inputs.values())
    return dynamic and all(a.ndim and a.shape[0] == rows for a in feeds.values())
