"""The trainer's metrics (documented in docs/metrics.md), served on `FERMION_METRICS_PORT`.

Job outcomes are counted where the worker decides them; the consumer's backlog (pending,
waiting for an ack, redelivered) is read from JetStream every few seconds by `watch_consumer`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fermion.events import ConsumerState

from .backlog import State, poll_backlogs
from .exposition import SLOW_BUCKETS

log = logging.getLogger("fermion.trainer")


class TrainerMetrics:
    """Jobs started, completed, failed and dead-lettered; their time; the shared consumer's backlog."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.started = Counter("fermion_trainer_jobs_started", "Job deliveries taken up.", registry=registry)
        self.completed = Counter("fermion_trainer_jobs_completed", "Jobs registered and acked.", registry=registry)
        self.failed = Counter(
            "fermion_trainer_jobs_failed",
            "Job attempts that failed, by whether they will be retried (retry) or not (final).",
            ["outcome"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "fermion_trainer_jobs_dead_lettered",
            "Job messages put on the dead-letter subject, by why (failed, malformed, exhausted).",
            ["cause"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "fermion_trainer_redeliveries", "Job deliveries that were not the first.", registry=registry
        )
        self.duration = Histogram(
            "fermion_trainer_job_duration_seconds",
            "From taking a job up to its ack (completed jobs).",
            buckets=SLOW_BUCKETS,
            registry=registry,
        )
        self.epoch = Histogram(
            "fermion_trainer_epoch_duration_seconds",
            "Time per training epoch.",
            buckets=SLOW_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("fermion_trainer_jobs_in_flight", "Jobs this replica is working on.", registry=registry)
        self.pending = Gauge(
            "fermion_trainer_consumer_pending_messages",
            "Messages the shared consumer has not delivered yet, by consumer.",
            ["consumer"],
            registry=registry,
        )
        self.ack_pending = Gauge(
            "fermion_trainer_consumer_ack_pending_messages",
            "Messages delivered and not yet acknowledged, by consumer.",
            ["consumer"],
            registry=registry,
        )
        self.consumer_redelivered = Gauge(
            "fermion_trainer_consumer_redelivered_messages",
            "Messages the consumer is redelivering now, by consumer.",
            ["consumer"],
            registry=registry,
        )
        self.bus_up = Gauge("fermion_trainer_bus_up", "1 when the last consumer read succeeded.", registry=registry)


@lru_cache(maxsize=1)
def trainer_metrics() -> TrainerMetrics:
    """The process's trainer metrics."""
    return TrainerMetrics(CollectorRegistry(auto_describe=True))


def serve_metrics(port: int, host: str = "127.0.0.1") -> bool:
    """`/metrics` on its own port (prometheus-client's server thread); loopback unless told otherwise.

    A port already taken (another replica on the same host) is logged, not fatal: the trainer works on.
    """
    try:
        start_http_server(port, addr=host, registry=trainer_metrics().registry)
    except OSError as exc:
        log.error("metrics not served: cannot listen on %s:%d (%s); set FERMION_METRICS_PORT", host, port, exc)
        return False
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True


async def watch_consumer(
    state: State, consumers: list[tuple[str, str]], stop: asyncio.Event, every_s: float = 5.0
) -> None:
    """Copy each consumer's pending, ack-pending and redelivered counts into the gauges until `stop`."""
    metrics = trainer_metrics()

    def record(name: str, info: ConsumerState) -> None:
        metrics.pending.labels(name).set(info.pending)
        metrics.ack_pending.labels(name).set(info.unacked)
        metrics.consumer_redelivered.labels(name).set(info.redelivered)

    await poll_backlogs(state, consumers, stop, record, lambda ok: metrics.bus_up.set(int(ok)), every_s)
