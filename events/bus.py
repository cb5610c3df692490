"""The JetStream bus: publish events, pull jobs, watch the event log. The only module that talks NATS.

Errors::

    BusError
    ├── BusUnavailable   the server cannot be reached (connect, publish or fetch timed out)
    └── PublishRejected  the server refused a publish (no stream for the subject, ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from . import streams
from .schemas import Event

log = logging.getLogger(__name__)


class BusError(Exception):
    """Base of every bus error."""


class BusUnavailable(BusError):
    """The NATS server could not be reached in time."""


class PublishRejected(BusError):
    """The server refused a publish (for example, no stream holds the subject)."""


@dataclass
class Delivery:
    """One delivery of a job message; its fate (ack, nak, term) is the consumer's decision."""

    subject: str
    data: bytes
    num_delivered: int
    seq: int
    _msg: Msg

    async def ack(self) -> None:
        """Done: the work queue drops the message (waits for the server's confirmation)."""
        await self._msg.ack_sync()

    async def nak(self, delay_s: float | None = None) -> None:
        """Not done: deliver again, after `delay_s`."""
        await self._msg.nak(delay=delay_s)

    async def in_progress(self) -> None:
        """Still working: restart the ack-wait clock."""
        await self._msg.in_progress()

    async def term(self) -> None:
        """Never deliver again (the caller dead-letters it first)."""
        await self._msg.term()


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
        msg = msgs[0]
        meta = msg.metadata
        return Delivery(msg.subject, msg.data, meta.num_delivered, meta.sequence.stream, msg)

    async def close(self) -> None:
        """Unsubscribe (before any drain: a timed-out fetch otherwise makes drain wait its timeout)."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


class Bus:
    """Publishes events with Nats-Msg-Id de-duplication and hands out job queues and event watches."""

    def __init__(self, nc: Client, closing: asyncio.Event | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._closing = closing or asyncio.Event()

    @classmethod
    async def connect(cls, url: str, *, name: str = "fermion", timeout_s: float = 5.0) -> Bus:
        """Connect to NATS at `url`; raises BusUnavailable if it cannot within `timeout_s`."""

        closing = asyncio.Event()

        async def _disconnected() -> None:
            if not closing.is_set():
                log.warning("disconnected from NATS at %s; reconnecting", url)

        try:
            # Once connected, reconnect forever (a NATS restart mid-job must not kill a worker);
            # the first connection, though, is bounded so a wrong URL fails fast instead of hanging.
            nc = await asyncio.wait_for(
                nats.connect(
                    url,
                    name=name,
                    connect_timeout=min(timeout_s, 2.0),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=_disconnected,
                ),
                timeout_s,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(f"cannot reach NATS at {url}: {exc}") from exc
        return cls(nc, closing)

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        return self._nc.is_connected

    async def close(self) -> None:
        """Close the connection (JetStream publishes were already acknowledged, so nothing is pending)."""
        self._closing.set()
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.close()

    async def provision(self, policy: streams.ConsumerPolicy | None = None) -> None:
        """Create or update the streams and the trainers' durable consumer (idempotent)."""
        try:
            for config in streams.stream_configs():
                try:
                    await self._js.add_stream(config)
                except nats.js.errors.BadRequestError:
                    await self._js.update_stream(config)
            await self._js.add_consumer(
                streams.JOBS_STREAM, streams.trainer_consumer(policy or streams.ConsumerPolicy())
            )
            await self._js.add_consumer(streams.JOBS_STREAM, streams.sweep_consumer(policy or streams.ConsumerPolicy()))
            await self._js.add_consumer(
                streams.JOBS_STREAM, streams.federation_consumer(policy or streams.ConsumerPolicy())
            )
            with contextlib.suppress(nats.js.errors.BadRequestError):  # exists: its start point must not move
                await self._js.add_consumer(streams.EVENTS_STREAM, streams.pipeline_consumer())
        except nats.errors.Error as exc:
            raise BusError(f"provisioning JetStream failed: {exc}") from exc

    async def publish(self, event: Event, *, subject: str | None = None) -> bool:
        """Publish `event` durably, with Nats-Msg-Id = event id; False if JetStream already had it."""
        return await self.publish_bytes(subject or event.subject, event.to_json(), msg_id=event.id)

    async def publish_bytes(
        self, subject: str, data: bytes, *, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> bool:
        """Publish raw bytes to a stream subject; False when de-duplicated by `msg_id`."""
        all_headers = dict(headers or {})
        if msg_id:
            all_headers["Nats-Msg-Id"] = msg_id
        try:
            ack = await self._js.publish(subject, data, headers=all_headers or None, timeout=5.0)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise BusUnavailable(f"no JetStream answer publishing to {subject}: {exc!r}") from exc
        except nats.js.errors.Error as exc:
            raise PublishRejected(f"JetStream refused a publish to {subject}: {exc}") from exc
        except nats.errors.Error as exc:
            raise BusUnavailable(f"publishing to {subject} failed: {exc!r}") from exc
        return not ack.duplicate

    def listen(self, subject: str, *, queue: str = "") -> AsyncGenerator[bytes, None]:
        """Core NATS messages on `subject` (advisories); `queue` shares them among replicas."""
        return self._pump(lambda cb: self._nc.subscribe(subject, queue=queue, cb=cb), f"subscribe to {subject}")

    async def flag_on(self, subject: str, flag: threading.Event) -> Callable[[], Awaitable[None]]:
        """Set `flag` when anything arrives on `subject`; the subscription is live when this returns.

        Returns the coroutine function that unsubscribes.
        """

        async def on_msg(msg: Msg) -> None:
            flag.set()

        try:
            sub = await self._nc.subscribe(subject, cb=on_msg)
            await self._nc.flush(timeout=5)  # the server has the interest before we go on
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusError(f"cannot subscribe to {subject}: {exc}") from exc

        async def close() -> None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

        return close

    async def take_job(self, seq: int) -> StoredMessage | None:
        """Remove a job message from the work queue by sequence and return it (None if already gone)."""
        try:
            raw = await self._js.get_msg(streams.JOBS_STREAM, seq)
            await self._js.delete_msg(streams.JOBS_STREAM, seq)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:
            raise BusError(f"cannot take job message {seq}: {exc}") from exc
        return StoredMessage.of(raw)

    async def last(self, subject: str) -> StoredMessage | None:
        """The event log's last message on exactly `subject`, or None."""
        try:
            raw = await self._js.get_last_msg(streams.EVENTS_STREAM, subject)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:
            raise BusError(f"cannot read the last message on {subject}: {exc}") from exc
        return StoredMessage.of(raw)

    async def queued_jobs(self, limit: int = 1000) -> list[StoredMessage]:
        """Job messages still in the work queue (not yet acked), oldest first, at most `limit`."""
        try:
            state = (await self._js.stream_info(streams.JOBS_STREAM)).state
            out = []
            for seq in range(max(state.first_seq, state.last_seq - limit + 1), state.last_seq + 1):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    raw = await self._js.get_msg(streams.JOBS_STREAM, seq)
                    out.append(StoredMessage.of(raw))
        except nats.errors.Error as exc:
            raise BusError(f"cannot read the job queue: {exc}") from exc
        return out

    async def history(self, subject: str, *, stream: str = streams.EVENTS_STREAM) -> list[StoredMessage]:
        """Every stored message on `subject` (wildcards allowed), oldest first, read to the end."""
        out: list[StoredMessage] = []
        try:
            info = await self._js.stream_info(stream, subjects_filter=subject)
            if not info.state.subjects:  # nothing stored on it: do not wait out a fetch timeout
                return out
            sub = await self._js.subscribe(
                subject, stream=stream, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            )
        except nats.errors.Error as exc:
            raise BusError(f"cannot read {subject}: {exc}") from exc
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                out.append(StoredMessage(msg.metadata.sequence.stream, msg.subject, msg.data, dict(msg.headers or {})))
                if msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return out

    async def job_queue(self, durable: str = streams.TRAINER_DURABLE, stream: str = streams.JOBS_STREAM) -> JobQueue:
        """Bind a pull subscription to a shared durable consumer (the trainers', or the pipelines')."""
        try:
            sub = await self._js.pull_subscribe_bind(durable, stream=stream)
        except nats.errors.Error as exc:
            raise BusError(f"cannot bind to consumer {durable!r}: {exc}") from exc
        return JobQueue(sub)

    def watch(self, subject: str, *, since: datetime | None = None) -> AsyncGenerator[bytes, None]:
        """Yield the event log's messages on `subject` (wildcards allowed), from `since` or from now."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.NEW,
            opt_start_time=since,
        )
        return self._pump(
            lambda cb: self._js.subscribe(
                subject, stream=streams.EVENTS_STREAM, ordered_consumer=True, config=config, cb=cb
            ),
            f"watch {subject}",
        )

    @staticmethod
    async def _pump(
        subscribe: Callable[[Callable[[Msg], Awaitable[None]]], Awaitable[Any]], what: str
    ) -> AsyncGenerator[bytes, None]:
        """Subscribe with a callback that queues, and yield what arrives until the caller closes us."""
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            await inbox.put(msg.data)

        try:
            sub = await subscribe(on_msg)
        except nats.errors.Error as exc:
            raise BusError(f"cannot {what}: {exc}") from exc
        try:
            while True:
                yield await inbox.get()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
