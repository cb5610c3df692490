"""Per-tenant quotas, checked before a request is accepted; past one, a 429 names the limit and its setting."""

from __future__ import annotations

import json

from fermion.events import TENANT_HEADER, Bus
from fermion.model_store import ObjectStore, Registry, Usage
from fermion.service.auth import QuotaExceeded

from .settings import IngestSettings

QUEUE_SCAN = 5000  # the newest queued messages looked at; a tenant at its quota has far fewer


async def check_queued_jobs(bus: Bus, tenant: str, settings: IngestSettings) -> None:
    """QuotaExceeded if `tenant` already has `max_queued_jobs` jobs waiting."""
    waiting = sum(1 for m in await bus.queued_jobs(limit=QUEUE_SCAN) if _tenant(m.headers, m.data) == tenant)
    if waiting >= settings.max_queued_jobs:
        raise QuotaExceeded(
            f"tenant {tenant!r} has {waiting} jobs queued, its limit (FERMION_MAX_QUEUED_JOBS) is "
            f"{settings.max_queued_jobs}; wait for some to finish"
        )


def check_models(registry: Registry, tenant: str, model_name: str, settings: IngestSettings) -> None:
    """QuotaExceeded if training `model_name` would give `tenant` more than `max_models_per_tenant` models."""
    models = registry.models(tenant)
    if model_name not in models and len(models) >= settings.max_models_per_tenant:
        raise QuotaExceeded(
            f"tenant {tenant!r} has {len(models)} models, its limit (FERMION_MAX_MODELS_PER_TENANT) is "
            f"{settings.max_models_per_tenant}"
        )


def charge_upload(store: ObjectStore, tenant: str, size: int, settings: IngestSettings) -> None:
    """Count an upload's bytes against today's quota (UsageLimitReached → 429 through the translations)."""
    Usage(store).charge(
        tenant,
        "upload_bytes",
        size,
        limit=settings.max_upload_bytes_per_day,
        setting="FERMION_MAX_UPLOAD_BYTES_PER_DAY",
    )


def _tenant(headers: dict[str, str], data: bytes) -> str | None:
    if TENANT_HEADER in headers:
        return headers[TENANT_HEADER]
    try:  # published before the header existed
        return str(json.loads(data).get("tenant"))
    except (ValueError, AttributeError):
        return None
