"""Audit records on `fermion.audit.<action>`: who moved an alias, made or revoked a key, or was refused.

Recording never fails or slows the request it describes: the record is published in the
background, and a bus outage is logged instead (the request's own outcome stands).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nats-py loads with the first record, not with the function (cold start)
    from fermion.events import AuditEvent, Bus

from ..responses import HTTPError
from .authenticator import Principal

log = logging.getLogger("fermion.security")


class Auditor:
    """Publishes audit events through a bus obtained on first need."""

    def __init__(self, bus: Callable[[], Awaitable[Bus]]) -> None:
        self._bus = bus
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, principal: Principal, action: str, target: str, **fields: Any) -> None:
        """Publish an audit record in the background."""
        from fermion.events import AuditEvent, AuditRecord

        event = AuditEvent(
            tenant=principal.tenant,
            data=AuditRecord(
                action=action,  # type: ignore[arg-type]
                principal=principal.key_id,
                principal_tenant=principal.tenant,
                target=target,
                **fields,
            ),
        )
        task = asyncio.get_running_loop().create_task(self._publish(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait, at most `timeout_s`, for the records still being published (at shutdown, before the bus closes)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _publish(self, event: AuditEvent) -> None:
        from fermion.events import BusError

        try:
            await (await self._bus()).publish(event)
        except (BusError, HTTPError) as exc:  # the bus getter answers an unreachable bus with a 503 error
            log.warning("audit record %s (%s) not published: %s", event.data.action, event.data.target, exc)
