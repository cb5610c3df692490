"""Audit records still going out when an app shuts down are waited for (service/auth/audit.py).

The bus here is a stand-in whose publish takes time, as a real one's round trip does: what is under
test is the auditor's waiting, not NATS (tests/e2e/test_identity.py reads real records off the bus).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fermion.service.auth import Principal
from fermion.service.auth.audit import Auditor

CALLER = Principal("default", "key-1", frozenset({"read"}), "a key")


class SlowBus:
    """Publishes after `seconds`; what it published, in order."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.published: list[Any] = []

    async def publish(self, event: Any) -> None:
        await asyncio.sleep(self.seconds)
        self.published.append(event)


def auditor_over(bus: SlowBus) -> Auditor:
    """An auditor whose bus getter hands out `bus`."""

    async def get_bus() -> SlowBus:
        return bus

    return Auditor(get_bus)  # type: ignore[arg-type]


async def test_drain_waits_for_the_records_still_being_published() -> None:
    bus = SlowBus(0.05)
    auditor = auditor_over(bus)
    auditor.record(CALLER, "request.refused", "POST /v1/models/m/aliases/production", outcome="refused", reason="no")
    assert bus.published == []

    await auditor.drain()

    assert [(e.data.action, e.data.principal) for e in bus.published] == [("request.refused", "key-1")]


async def test_drain_gives_up_after_its_timeout() -> None:
    bus = SlowBus(60)
    auditor = auditor_over(bus)
    auditor.record(CALLER, "request.refused", "GET /v1/keys", outcome="refused", reason="no")
    started = time.monotonic()

    await auditor.drain(timeout_s=0.2)

    assert time.monotonic() - started < 5 and bus.published == []
