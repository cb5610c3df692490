"""The monitor's metrics (documented in docs/metrics.md), served on `FERMION_METRICS_PORT`.

Drift per version as each window is judged, online accuracy as labels arrive, and each rollout's
latest comparison of canary and incumbent as the controller judges it. A finished rollout's
gauges are removed, so a dashboard never shows a comparison that is no longer running. And the
trainers' backlog, read by the monitor because the trainers' own gauges go with them when they are
scaled to zero (`FermionJobsWaitingWithoutTrainers`).
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from fermion.events import ConsumerState

log = logging.getLogger("fermion.monitor")
ROLES = ("canary", "incumbent")


class MonitorMetrics:
    """Every monitor series, on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        version = ["tenant", "model", "version"]
        alias = ["tenant", "model", "alias"]
        self.drift_windows = Counter(
            "fermion_monitor_drift_windows",
            "Drift windows judged, by version and whether they raised an alarm (alarm: true or false).",
            [*version, "alarm"],
            registry=registry,
        )
        self.drift_psi = Gauge(
            "fermion_monitor_drift_psi_max",
            "The largest population stability index over the features of the version's latest window.",
            version,
            registry=registry,
        )
        self.prediction_psi = Gauge(
            "fermion_monitor_drift_prediction_psi",
            "PSI of the predicted classes' frequencies in the version's latest window.",
            version,
            registry=registry,
        )
        self.drifted = Gauge(
            "fermion_monitor_drift_features",
            "Features that moved in the version's latest window (PSI over the threshold and KS significant).",
            version,
            registry=registry,
        )
        self.labels = Counter(
            "fermion_monitor_labelled_predictions",
            "Predictions joined with their label, by version and whether the prediction was right (correct).",
            [*version, "correct"],
            registry=registry,
        )
        self.accuracy = Gauge(
            "fermion_monitor_online_accuracy_ratio",
            "Online accuracy of a version: right predictions over labelled ones, since the monitor started.",
            version,
            registry=registry,
        )
        self.weight = Gauge(
            "fermion_monitor_rollout_canary_weight_percent",
            "The canary's share of the alias's traffic while a rollout runs.",
            [*alias, "canary", "incumbent"],
            registry=registry,
        )
        self.error_ratio = Gauge(
            "fermion_monitor_rollout_error_ratio",
            "Error ratio in the rollout's current step, of the canary and of the incumbent (role).",
            [*alias, "role"],
            registry=registry,
        )
        self.p99 = Gauge(
            "fermion_monitor_rollout_p99_seconds",
            "p99 latency in the rollout's current step, of the canary and of the incumbent (role).",
            [*alias, "role"],
            registry=registry,
        )
        self.rollout_accuracy = Gauge(
            "fermion_monitor_rollout_online_accuracy_ratio",
            "Online accuracy the controller compared, of the canary and of the incumbent (role; absent: no labels).",
            [*alias, "role"],
            registry=registry,
        )
        self.actions = Counter(
            "fermion_monitor_rollout_actions",
            "The controller's moves and announcements: stepped, promoted, rolled_back, waiting.",
            [*alias, "action"],
            registry=registry,
        )
        self.backlog_messages, self.backlog_up = _backlog_gauges(registry)
        self._rolling: dict[tuple[str, str, str], tuple[str, str]] = {}

    def backlog(self, consumer: str, state: ConsumerState) -> None:
        """A consumer the trainers serve, as just read: a job held by a trainer that died is still to do."""
        self.backlog_messages.labels(consumer).set(state.pending + state.unacked)

    def backlog_read(self, ok: bool) -> None:
        """After a read: a failed one leaves no figure, so no alert fires on a stale count."""
        self.backlog_up.set(int(ok))
        if not ok:
            self.backlog_messages.clear()

    def judged_window(
        self,
        tenant: str,
        model: str,
        version: int,
        *,
        alarm: bool,
        max_psi: float,
        prediction_psi: float | None,
        drifted: int,
    ) -> None:
        """One drift window judged."""
        labels = (tenant, model, str(version))
        self.drift_windows.labels(*labels, str(alarm).lower()).inc()
        self.drift_psi.labels(*labels).set(max_psi)
        if prediction_psi is not None:
            self.prediction_psi.labels(*labels).set(prediction_psi)
        self.drifted.labels(*labels).set(drifted)

    def labelled(self, tenant: str, model: str, version: int, correct: bool, accuracy: float) -> None:
        """One prediction met its label."""
        labels = (tenant, model, str(version))
        self.labels.labels(*labels, str(correct).lower()).inc()
        self.accuracy.labels(*labels).set(accuracy)

    def compared(
        self, key: tuple[str, str, str], canary: int, incumbent: int, weight: int, seen: dict[str, float]
    ) -> None:
        """A rollout's latest comparison (`seen`: the controller's observed figures)."""
        versions = (str(canary), str(incumbent))
        if (was := self._rolling.get(key)) is not None and was != versions:
            self.weight.remove(*key, *was)
        self._rolling[key] = versions
        self.weight.labels(*key, *versions).set(weight)
        for role in ROLES:
            self.error_ratio.labels(*key, role).set(seen[f"{role}_error_ratio"])
            self.p99.labels(*key, role).set(seen[f"{role}_p99_ms"] / 1000)
            if f"{role}_accuracy" in seen:
                self.rollout_accuracy.labels(*key, role).set(seen[f"{role}_accuracy"])

    def ended(self, key: tuple[str, str, str]) -> None:
        """The alias has no rollout any more: its comparison's gauges go."""
        if (was := self._rolling.pop(key, None)) is None:
            return
        self.weight.remove(*key, *was)
        for gauge in (self.error_ratio, self.p99, self.rollout_accuracy):
            for role in ROLES:
                with contextlib.suppress(KeyError):  # accuracy is set only once labels came
                    gauge.remove(*key, role)

    def acted(self, key: tuple[str, str, str], action: str) -> None:
        """The controller moved the alias (or announced it waits)."""
        self.actions.labels(*key, action).inc()


def _backlog_gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    messages = Gauge(
        "fermion_monitor_trainer_backlog_messages",
        "Messages the trainers have to do, by consumer: not yet delivered, or delivered and not acknowledged "
        "(absent while unreadable).",
        ["consumer"],
        registry=registry,
    )
    up = Gauge(
        "fermion_monitor_trainer_backlog_up",
        "1 when the last read of the trainers' backlog succeeded.",
        registry=registry,
    )
    return messages, up


@lru_cache(maxsize=1)
def monitor_metrics() -> MonitorMetrics:
    """The process's monitor metrics."""
    return MonitorMetrics(CollectorRegistry(auto_describe=True))


def serve_monitor_metrics(port: int, host: str = "127.0.0.1") -> bool:
    """`/metrics` on its own port (prometheus-client's server thread); a taken port is logged, not fatal."""
    try:
        start_http_server(port, addr=host, registry=monitor_metrics().registry)
    except OSError as exc:
        log.error("metrics not served: cannot listen on %s:%d (%s); set FERMION_METRICS_PORT", host, port, exc)
        return False
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True
