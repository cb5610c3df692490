"""The ingest function's metrics (documented in docs/metrics.md): one set per process.

Ingest's requests are counted by route template by the access middleware
(`fermion_http_requests_total`); these are what only ingest knows.
"""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Histogram

from .exposition import LATENCY_BUCKETS


class IngestMetrics:
    """Uploads, their bytes and refusals, and how long publishing to JetStream takes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.uploads = Counter(
            "fermion_ingest_uploads", "Datasets stored and announced, by format.", ["format"], registry=registry
        )
        self.upload_bytes = Counter(
            "fermion_ingest_upload_bytes", "Bytes of datasets stored, by format.", ["format"], registry=registry
        )
        self.refusals = Counter(
            "fermion_ingest_refused_requests",
            "Ingest requests refused, by route template and reason (the error class).",
            ["route", "reason", "status"],
            registry=registry,
        )
        self.publish = Histogram(
            "fermion_ingest_publish_duration_seconds",
            "Time for JetStream to acknowledge a publish, by subject family and outcome.",
            ["subject", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def published(self, subject: str, seconds: float, ok: bool) -> None:
        """The bus's publish hook (`Bus.on_publish`)."""
        self.publish.labels(subject_family(subject), "ok" if ok else "error").observe(seconds)


def subject_family(subject: str) -> str:
    """A bounded label for a subject: `fermion.dlq`, or its first three tokens (never a job id)."""
    if subject.startswith("fermion.dlq."):
        return "fermion.dlq"
    return ".".join(subject.split(".")[:3])


@lru_cache(maxsize=1)
def ingest_metrics() -> IngestMetrics:
    """The process's ingest metrics (every app built in the process shares them)."""
    return IngestMetrics(CollectorRegistry(auto_describe=True))
