"""What the bus hands out of JetStream: job deliveries from a pull consumer, stored messages, a consumer's backlog."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js
from nats.aio.msg import Msg

from .errors import BusError, BusUnavailable


@dataclass
class Delivery:
    """One delivery of a job message; its fate (ack, nak, term) is the consumer's decision."""

    subject: str
    data: bytes
    num_delivered: int
    seq: int
    _msg: Msg
    headers: dict[str, str] = field(default_factory=dict)
    """The message's headers (a trace's `traceparent`, the tenant)."""

    async def ack(self) -> None:
        """Done: the work queue drops the message (waits for the server's confirmation)."""
        async with _translated("ack", self.seq):
            await self._msg.ack_sync()

    async def nak(self, delay_s: float | None = None) -> None:
        """Not done: deliver again, after `delay_s`."""
        async with _translated("nak", self.seq):
            await self._msg.nak(delay=delay_s)

    async def in_progress(self) -> None:
        """Still working: restart the ack-wait clock."""
        async with _translated("heartbeat", self.seq):
            await self._msg.in_progress()

    async def term(self) -> None:
        """Never deliver again (the caller dead-letters it first)."""
        async with _translated("term", self.seq):
            await self._msg.term()


@contextlib.asynccontextmanager
async def _translated(what: str, seq: int) -> AsyncIterator[None]:
    """nats-py's errors on a message acknowledgement as the bus's own."""
    try:
        yield
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
        raise BusUnavailable(f"cannot {what} message {seq}: {exc!r}") from exc
    except nats.errors.Error as exc:
        raise BusError(f"cannot {what} message {seq}: {exc!r}") from exc


@dataclass(frozen=True)
class StoredMessage:
    """A message as a stream holds it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, raw: Any) -> StoredMessage:
        """From nats-py's RawStreamMsg."""
        return cls(raw.seq, raw.subject, raw.data or b"", dict(raw.headers or {}))


@dataclass(frozen=True)
class ConsumerState:
    """A durable consumer's backlog."""

    pending: int
    """Messages not delivered yet."""
    unacked: int
    """Delivered, not acknowledged yet (being worked on, or waiting for redelivery)."""
    redelivered: int = 0
    """Delivered more than once and not acknowledged yet."""

    @property
    def idle(self) -> bool:
        """Nothing left to deliver and nothing in hand."""
        return self.pending == 0 and self.unacked == 0


class JobQueue:
    """A pull subscription on the shared durable consumer."""

    def __init__(self, sub: nats.js.JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def fetch(self, timeout_s: float = 1.0) -> Delivery | None:
        """The next job, or None when none arrived within `timeout_s`."""
        try:
            msgs = await self._sub.fetch(1, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return None
        except nats.errors.ConnectionClosedError as exc:
            raise BusUnavailable("connection to NATS closed while fetching") from exc
        except nats.errors.Error as exc:  # JetStream unavailable (a cluster electing a leader), and the like
            raise BusUnavailable(f"cannot fetch from the job queue: {exc!r}") from exc
        msg = msgs[0]
        meta = msg.metadata
        return Delivery(msg.subject, msg.data, meta.num_delivered, meta.sequence.stream, msg, dict(msg.headers or {}))

    async def close(self) -> None:
        """Unsubscribe (before any drain: a timed-out fetch otherwise makes drain wait its timeout)."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()
