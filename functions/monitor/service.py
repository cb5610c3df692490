"""The monitor process: telemetry in, drift windows and rollout verdicts out.

`python -m fermion.functions.monitor` consumes the inference functions' telemetry (core NATS,
queue group `monitors`), labels (`fermion.models.labels`) and rollout starts from the event log,
judges drift per model version window by window (`drift.py`), publishes every window's figures on
`fermion.models.drift_judged` and an alarm on `fermion.models.drift_detected` naming the features
that moved, runs the rollout controller
(`controller.py`) every `tick_s`, keeps each version's serving windows in the store every
`serving_window_s` (`traffic.py`, `model_store/serving.py`), and serves its metrics on
`FERMION_METRICS_PORT` (`service/observability/monitor.py`), among them the work waiting for the
trainers, read from each consumer they serve every 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime

import numpy as np
from pydantic import ValidationError

from fermion.events import (
    Bus,
    BusError,
    DriftDetected,
    DriftJudged,
    DriftReport,
    LabelsSubmitted,
    ModelRollout,
    parse_event,
    streams,
    subjects,
)
from fermion.events.traffic import Sample, TelemetryBatch
from fermion.model_store import Manifest, Registry, RegistryError, ServingLog, open_registry
from fermion.model_store.profiles import Profile
from fermion.service.lifecycle import stop_on_signals
from fermion.service.observability.backlog import State, poll_backlogs
from fermion.service.observability.monitor import MonitorMetrics, monitor_metrics, serve_monitor_metrics

from .controller import Controller
from .drift import Verdict, Window, judge
from .ledger import Accuracy, Ledger
from .settings import MonitorSettings, get_settings
from .traffic import TrafficWindows

log = logging.getLogger("fermion.monitor")
Key = tuple[str, str, int]


class Monitor:
    """Drift windows per version, the label ledger and the rollout controller of one replica."""

    def __init__(
        self, bus: Bus, registry: Registry, settings: MonitorSettings, metrics: MonitorMetrics | None = None
    ) -> None:
        self.bus = bus
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.serving = ServingLog(registry.store)
        self.traffic = TrafficWindows()
        self.ledger = Ledger(settings.predictions_kept, settled=self._settled)
        self.controller = Controller(bus, registry, self.accuracy, serving=self.serving, metrics=metrics)
        self.windows: dict[Key, Window] = {}
        self.verdicts: dict[Key, list[Verdict]] = {}
        """Every judged window per version, newest last (bounded): the monitor's drift metrics."""
        self.shadows: dict[tuple[str, str, int, int], list[int]] = {}
        """(tenant, model, primary, shadow) → [compared, agreed, errors]."""
        self._manifests: dict[Key, Manifest | None] = {}

    def accuracy(self, tenant: str, name: str, version: int) -> Accuracy:
        """Online accuracy of a version from submitted labels."""
        return self.ledger.accuracy.get((tenant, name, version), Accuracy())

    def _settled(self, key: Key, correct: bool, tally: Accuracy) -> None:
        if self.metrics is not None and tally.ratio is not None:
            self.metrics.labelled(*key, correct, tally.ratio)

    async def keep_traffic(self) -> None:
        """Close the open serving window and append it to each model's series in the store."""
        for (tenant, name), windows in self.traffic.close(self.ledger.accuracy).items():
            try:
                await asyncio.to_thread(self.serving.append, tenant, name, windows)
            except RegistryError as exc:  # a gap in the graph, nothing worse
                log.warning("serving windows of %s not kept: %s", name, exc)

    async def on_telemetry(self, data: bytes) -> None:
        """One inference function's interval: stats to the controller, predictions to the ledger, samples to drift."""
        try:
            batch = TelemetryBatch.model_validate_json(data)
        except ValidationError as exc:
            log.warning("dropped an unreadable telemetry batch: %s", exc.errors()[:2])
            return
        for stats in batch.stats:
            self.controller.record(stats)
            self.traffic.add(stats)
        for p in batch.predictions:
            manifest = await self._manifest(p.tenant, p.name, p.version)
            labels = manifest.labels if manifest else []
            predicted = labels[p.predicted] if p.predicted < len(labels) else str(p.predicted)
            self.ledger.predicted(p.tenant, p.name, p.request_id, p.version, predicted)
        for s in batch.shadows:
            tally = self.shadows.setdefault((s.tenant, s.name, s.primary, s.shadow), [0, 0, 0])
            tally[0], tally[1], tally[2] = tally[0] + s.compared, tally[1] + s.agreed, tally[2] + s.errors
            log.info(
                "shadow v%d of %s beside v%d: %d compared in total, agreement %.3f, %d errors, "
                "p50 %.3f ms (primary %.3f ms)",
                s.shadow,
                s.name,
                s.primary,
                tally[0],
                tally[1] / max(tally[0] - tally[2], 1),
                tally[2],
                float(np.median(s.shadow_ms)) if s.shadow_ms else float("nan"),
                float(np.median(s.primary_ms)) if s.primary_ms else float("nan"),
            )
        for sample in batch.samples:
            await self._sampled(sample)

    async def on_labels(self, data: bytes) -> None:
        """Ground truth for past predictions, by request id."""
        try:
            event = parse_event(data, LabelsSubmitted)
        except ValidationError as exc:
            log.warning("dropped an unreadable labels event: %s", exc.errors()[:2])
            return
        assert isinstance(event, LabelsSubmitted)
        for entry in event.data.labels:
            self.ledger.labelled(event.tenant, event.data.model_name, entry.request_id, entry.label)

    async def on_rollout(self, data: bytes) -> None:
        """A rollout started: judge its alias from now on, traffic or not."""
        with contextlib.suppress(ValidationError):
            event = parse_event(data, ModelRollout)
            assert isinstance(event, ModelRollout)
            self.controller.watch(event.tenant, event.data.model_name, event.data.alias)

    async def _sampled(self, sample: Sample) -> None:
        manifest = await self._manifest(sample.tenant, sample.name, sample.version)
        if manifest is None or manifest.profile is None:
            return
        profile = Profile.model_validate(manifest.profile)
        # A regression's reference bins its predicted values; a classifier's counts predicted classes.
        if profile.prediction is not None:
            predicted = np.asarray(sample.values, dtype=np.float64)
        else:
            predicted = np.asarray(sample.predictions, dtype=np.int64)
        try:
            x = sample.rows()
        except ValueError as exc:
            log.warning("dropped an unreadable sample of %s: %s", sample.name, exc)
            return
        if not len(predicted) or x.shape[1] != len(profile.features) or len(x) != len(predicted):
            return
        key = (sample.tenant, sample.name, sample.version)
        window = self.windows.setdefault(key, Window(self.settings.window_rows))
        if not window.add(x, predicted):
            return
        while window.count >= window.size:
            rows, predicted = window.take()
            verdict = await asyncio.to_thread(
                judge, profile, rows, predicted, psi_threshold=self.settings.psi_threshold, alpha=self.settings.ks_alpha
            )
            self.verdicts.setdefault(key, []).append(verdict)
            del self.verdicts[key][:-1000]
            log.info(
                "drift window %d of %s version %d: max PSI %.3f, drifted %s, prediction PSI %s",
                window.index,
                sample.name,
                sample.version,
                max(verdict.psi.values(), default=0.0),
                verdict.drifted,
                verdict.prediction_psi,
            )
            if self.metrics is not None:
                self.metrics.judged_window(
                    *key,
                    alarm=verdict.alarm,
                    max_psi=max(verdict.psi.values(), default=0.0),
                    prediction_psi=verdict.prediction_psi,
                    drifted=len(verdict.drifted),
                )
            await self._judged(key, window.index, verdict)

    async def _judged(self, key: Key, index: int, verdict: Verdict) -> None:
        """Every window goes on the log (what a user sees of drift); an alarm also as `drift_detected`."""
        tenant, name, version = key
        report = DriftReport(
            model_name=name,
            version=version,
            window=index,
            rows=verdict.rows,
            features=verdict.drifted,
            psi=verdict.psi,
            ks_pvalue=verdict.ks_pvalue,
            prediction_psi=verdict.prediction_psi,
            prediction_drift=verdict.prediction_drift,
        )
        await self.bus.publish(DriftJudged(tenant=tenant, data=report))
        if verdict.alarm:
            await self.bus.publish(DriftDetected(tenant=tenant, data=report))

    async def _manifest(self, tenant: str, name: str, version: int) -> Manifest | None:
        key = (tenant, name, version)
        if key not in self._manifests:
            try:
                self._manifests[key] = await asyncio.to_thread(self.registry.manifest, tenant, name, version)
            except RegistryError as exc:
                log.warning("no manifest for %s version %d: %s", name, version, exc)
                return None
        return self._manifests[key]


async def _pump(source: AsyncGenerator[bytes, None], handler: Callable[[bytes], Awaitable[None]]) -> None:
    async for data in source:
        await handler(data)


async def _ticks(monitor: Monitor, every_s: float) -> None:
    while True:
        try:
            await monitor.controller.tick()
        except (BusError, RegistryError) as exc:  # NATS or the store away for a moment: judge again next tick
            log.warning("rollout tick failed: %s", exc)
        await asyncio.sleep(every_s)


async def _windows(monitor: Monitor, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await monitor.keep_traffic()


def _ended(task: asyncio.Task[None], then: Callable[[], None] | None = None) -> None:
    """A task that ended with an error before the stop: said at once (not only at the stop), then `then`."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("monitor: %s failed and is not running any more", task.get_name(), exc_info=exc)
        if then is not None:
            then()


def _backlog_reads(state: State, metrics: MonitorMetrics, stop: asyncio.Event) -> asyncio.Task[None]:
    """The trainers' backlog into the metrics every 5 s, until `stop`. Dead, the task would leave its
    last figures up: it is reported unreadable instead (FermionTrainerBacklogUnreadable)."""
    reads = poll_backlogs(state, streams.TRAINER_CONSUMERS, stop, metrics.backlog, metrics.backlog_read)
    task = asyncio.create_task(reads, name="the trainers' backlog reads")
    task.add_done_callback(lambda done: _ended(done, lambda: metrics.backlog_read(False)))
    return task


async def serve(settings: MonitorSettings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run one monitor replica until SIGINT/SIGTERM (or `stop`)."""
    settings = settings or get_settings()
    stop = stop_on_signals(stop)
    started = datetime.now(UTC)
    bus = await Bus.from_settings(settings, name="fermion-monitor")
    try:
        await bus.prepare(settings, [])  # it consumes no durable consumer: ordered reads and core NATS
        metrics = monitor_metrics() if settings.metrics else None
        if metrics is not None and settings.metrics_port:
            serve_monitor_metrics(settings.metrics_port, settings.metrics_host)
        monitor = Monitor(bus, open_registry(settings), settings, metrics)
        unsubscribe = await bus.on(subjects.TELEMETRY, monitor.on_telemetry, queue="monitors")
        tasks = [
            asyncio.create_task(
                _pump(bus.watch(subjects.MODELS_LABELS, since=started), monitor.on_labels), name="the labels"
            ),
            asyncio.create_task(
                _pump(bus.watch(f"{subjects.MODELS_ROLLOUT}.started", since=started), monitor.on_rollout),
                name="the rollout starts",
            ),
            asyncio.create_task(_ticks(monitor, settings.tick_s), name="the rollout ticks"),
            asyncio.create_task(_windows(monitor, settings.serving_window_s), name="the serving windows"),
        ]
        for task in tasks:
            task.add_done_callback(_ended)
        if metrics is not None:  # the trainers' backlog, seen also when no trainer runs
            tasks.append(_backlog_reads(bus.consumer_state, metrics, stop))
        log.info("monitor: consuming telemetry on %s", subjects.TELEMETRY)
        await stop.wait()
        await unsubscribe()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await monitor.keep_traffic()  # the last, partial window
    finally:
        await bus.close()


def main() -> None:
    """Entry point: `python -m fermion.functions.monitor`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve())
