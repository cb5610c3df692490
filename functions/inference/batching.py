"""Dynamic batching for the long-running (uvicorn) deployment.

Concurrent requests to one model are merged, up to `max_batch_size` rows, into one session run
in a worker thread, and the outputs are split back by rows. Requests that arrive while a batch runs
queue up and form the next batch, so batches grow with load and add no wait when there is none;
`max_delay_ms` additionally waits for stragglers. Off under Mangum (one request per invocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .runtime import LoadedModel

log = logging.getLogger("fermion.inference")
FILL_WAIT_S = 0.005  # the longest a batch waits to fill up to the previous batch's size


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    outputs: list[str] | None
    future: asyncio.Future[dict[str, np.ndarray]]
    rows: int = field(init=False)
    queued: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.rows = next(iter(self.feeds.values())).shape[0]

    def key(self) -> tuple[object, ...]:
        """Requests batch together only with the same outputs and the same non-batch shapes and types."""
        return (tuple(self.outputs or ()), tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(self.feeds.items())))


class Batcher:
    """One per loaded model; runs at most one batch at a time, in a thread."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int,
        max_delay_ms: float,
        on_alone: Callable[[int, float], None] | None = None,
        on_run: Callable[[str, int, float, Iterable[float]], None] | None = None,
    ) -> None:
        self.model = model
        self._on_alone = on_alone  # told (rows, seconds) of each run of one request alone
        self._on_run = on_run  # told (model, rows, seconds, each request's wait) of every run: the metrics
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_ms / 1000.0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.requests = 0
        self._last_rows = 1  # rows in the previous batch: how many requests arrive together now
        self._last_run_s = 0.0  # how long that batch's run took

    @property
    def idle(self) -> bool:
        """No batch running and none queued."""
        return self._queue.empty() and (self._task is None or self._task.done())

    def batchable(self, feeds: dict[str, np.ndarray]) -> bool:
        """Whether these inputs can share a run: every input has a dynamic first axis, all the same rows."""
        rows = {a.shape[0] if a.ndim else -1 for a in feeds.values()}
        dynamic = all(shape and shape[0] is None for _, shape in self.model.inputs.values())
        return dynamic and len(rows) == 1 and 0 < next(iter(rows)) <= self.max_batch_size

    async def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> dict[str, np.ndarray]:
        """The model's outputs for `feeds`, computed together with whatever else is queued."""
        for name, array in feeds.items():
            self.model.check(name, array)  # a bad request fails alone, before it can join a batch
        pending = _Pending(feeds, outputs, asyncio.get_running_loop().create_future())
        await self._queue.put(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        return await pending.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._queue.empty():
            batch = [self._queue.get_nowait()]
            rows = batch[0].rows
            started = loop.time()
            # Under load, requests answered together come back together, a little spread out; a batch
            # formed from the first of them would run nearly alone and split the rest off into the
            # next. So, while it is smaller than the previous batch, a batch waits for them: at most a
            # quarter of the previous run (and FILL_WAIT_S), never when one request at a time arrives.
            fill = min(self._last_rows, self.max_batch_size)
            fill_wait = min(FILL_WAIT_S, self._last_run_s / 4)
            while rows < self.max_batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    wait = max(self.max_delay_s, fill_wait if rows < fill else 0.0)
                    remaining = started + wait - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if nxt.key() != batch[0].key() or rows + nxt.rows > self.max_batch_size:
                    await self._run([nxt])  # cannot join this batch: run it on its own, in order
                    continue
                batch.append(nxt)
                rows += nxt.rows
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.requests += len(batch)
        first = batch[0]
        try:
            if len(batch) == 1:
                merged = first.feeds
            else:
                merged = {n: np.concatenate([p.feeds[n] for p in batch]) for n in first.feeds}
            run_started = time.perf_counter()
            results = await asyncio.to_thread(self.model.run, merged, first.outputs)
            self._last_run_s = time.perf_counter() - run_started
            self._last_rows = sum(p.rows for p in batch)
            if len(batch) == 1 and self._on_alone is not None:
                self._on_alone(self._last_rows, self._last_run_s)
            if self._on_run is not None:
                self._on_run(
                    self.model.name, self._last_rows, self._last_run_s, [run_started - p.queued for p in batch]
                )
        except Exception as exc:  # the run's error belongs to every request in it
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result({n: a[start : start + p.rows] for n, a in results.items()})
            start += p.rows

    async def close(self) -> None:
        """Stop the batching task."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
