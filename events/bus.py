"""The JetStream bus: publish events, pull jobs, read and watch the event log, core NATS subjects.

With connection.py (opening a connection) and deliveries.py (what it hands out of JetStream), the only
modules that import nats-py; every nats-py error leaves them as one of errors.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from . import cloudevent, streams, subjects
from .config import BusConfig
from .connection import nats_options, open_connection
from .deliveries import ConsumerState, JobQueue, StoredMessage
from .envelope import Event
from .errors import BusError, BusUnavailable, PublishRejected, PublishUnconfirmed

TENANT_HEADER = "Fermion-Tenant"


def _publish_error(subject: str, exc: Exception, timeout_s: float) -> BusError:
    """nats-py's publish error as ours: not sent (unavailable), sent but unacknowledged, or refused."""
    if isinstance(exc, nats.errors.OutboundBufferLimitError):  # the connection dropped before it went out
        return BusUnavailable(f"not connected to NATS; nothing was published to {subject}")
    if isinstance(exc, nats.errors.NoRespondersError):  # nothing took it: no stream, or JetStream is down
        return BusUnavailable(f"no JetStream stream answered for {subject}; nothing was stored")
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
        return PublishUnconfirmed(
            f"no acknowledgement from JetStream within {timeout_s:.0f}s for {subject}: it may have been stored"
        )
    if isinstance(exc, nats.js.errors.Error):
        return PublishRejected(f"JetStream refused a publish to {subject}: {exc}")
    return BusUnavailable(f"publishing to {subject} failed: {exc!r}")


class Bus:
    """Publishes events with Nats-Msg-Id de-duplication and hands out job queues and event watches."""

    def __init__(self, nc: Client, closing: asyncio.Event | None = None, *, publish_timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._closing = closing or asyncio.Event()
        self._publish_timeout_s = publish_timeout_s
        self.on_publish: Callable[[str, float, bool], None] | None = None
        """Told (subject, seconds, acknowledged) of every publish: a function's metrics hook."""
        self.context_headers: Callable[[], dict[str, str]] | None = None
        """Headers every publish carries from its context (W3C `traceparent`): a function's tracing hook."""

    @classmethod
    async def from_settings(cls, settings: BusConfig, *, name: str, timeout_s: float = 5.0) -> Bus:
        """Connect as the identity (credentials file, nkey, or user and password) and TLS the settings give."""
        return await cls.connect(
            settings.nats_url,
            name=name,
            timeout_s=timeout_s,
            publish_timeout_s=settings.publish_timeout_s,
            **nats_options(settings),
        )

    @classmethod
    async def connect(
        cls, url: str, *, name: str = "fermion", timeout_s: float = 5.0, publish_timeout_s: float = 5.0, **options: Any
    ) -> Bus:
        """Connect to NATS at `url` (several: comma-separated); BusUnavailable if it cannot within `timeout_s`.

        `options` go to nats-py (identity, TLS); nothing secret ever appears in an error or log line.
        """
        nc, closing = await open_connection(url, name=name, timeout_s=timeout_s, **options)
        return cls(nc, closing, publish_timeout_s=publish_timeout_s)

    @property
    def connected(self) -> bool:
        """Whether the connection is up right now."""
        return self._nc.is_connected

    @property
    def closed(self) -> bool:
        """Whether the connection was closed for good (it never reconnects again)."""
        return self._nc.is_closed

    async def close(self) -> None:
        """Close the connection (JetStream publishes were already acknowledged, so nothing is pending)."""
        self._closing.set()
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self._nc.close()

    async def provision(self, policy: streams.ConsumerPolicy | None = None, *, replicas: int = 1) -> None:
        """Create or update the streams (`replicas` copies each) and the durable consumers (idempotent)."""
        try:
            for config in streams.stream_configs(replicas=replicas):
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
            await self._js.add_consumer(
                streams.JOBS_STREAM, streams.scorer_consumer(policy or streams.ConsumerPolicy())
            )
            with contextlib.suppress(nats.js.errors.BadRequestError):  # exists: its start point must not move
                await self._js.add_consumer(streams.EVENTS_STREAM, streams.pipeline_consumer())
            with contextlib.suppress(nats.js.errors.BadRequestError):  # issue 17: drift → retraining
                await self._js.add_consumer(streams.EVENTS_STREAM, streams.retrain_consumer())
        except nats.errors.Error as exc:
            raise BusError(f"provisioning JetStream failed: {exc}") from exc

    async def prepare(
        self, settings: BusConfig, durables: list[tuple[str, str]], policy: streams.ConsumerPolicy | None = None
    ) -> None:
        """Make ready what a unit consumes: provision it where the settings say so, else check it exists."""
        if settings.provision:
            await self.provision(policy, replicas=settings.stream_replicas)
            return
        for stream, durable in durables:
            try:
                await self._js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError as exc:
                raise BusError(
                    f"JetStream is not provisioned: {stream} has no consumer {durable!r}. Provisioning is an "
                    "admin step: run `python -m fermion.infra.provision` with the admin NATS identity"
                ) from exc
            except nats.errors.Error as exc:
                raise BusError(f"checking consumer {stream}/{durable} failed: {exc}") from exc

    async def publish(self, event: Event, *, subject: str | None = None) -> bool:
        """Publish `event` durably, with Nats-Msg-Id = event id; False if JetStream already had it.

        CloudEvents 1.0 on the wire (events/cloudevent.py; consumers accept both envelopes). The tenant
        travels in a header too, so a queue can be counted per tenant without parsing bodies.
        """
        data, headers = cloudevent.encode(event), {TENANT_HEADER: event.tenant, **cloudevent.HEADERS}
        return await self.publish_bytes(subject or event.subject, data, msg_id=event.id, headers=headers)

    async def publish_bytes(
        self, subject: str, data: bytes, *, msg_id: str | None = None, headers: dict[str, str] | None = None
    ) -> bool:
        """Publish raw bytes to a stream subject; False when de-duplicated by `msg_id`."""
        all_headers = {**self.context_headers(), **(headers or {})} if self.context_headers else dict(headers or {})
        if msg_id:
            all_headers["Nats-Msg-Id"] = msg_id
        if not self._nc.is_connected:
            raise BusUnavailable(f"not connected to NATS; nothing was published to {subject}")
        started = time.perf_counter()
        try:
            ack = await self._js.publish(subject, data, headers=all_headers or None, timeout=self._publish_timeout_s)
        except (nats.errors.Error, TimeoutError) as exc:
            if self.on_publish is not None:
                self.on_publish(subject, time.perf_counter() - started, False)
            raise _publish_error(subject, exc, self._publish_timeout_s) from exc
        if self.on_publish is not None:
            self.on_publish(subject, time.perf_counter() - started, True)
        return not ack.duplicate

    async def dead_letter(self, subject: str, data: bytes, reason: str, *, deliveries: int, msg_id: str) -> None:
        """Keep a message's original bytes on `fermion.dlq.<subject>`, with the reason and delivery count."""
        headers = {"Fermion-Reason": reason[:2000].replace("\n", " "), "Fermion-Deliveries": str(deliveries)}
        await self.publish_bytes(subjects.dead_letter(subject), data, msg_id=msg_id, headers=headers)

    async def send(self, subject: str, data: bytes) -> None:
        """Publish on core NATS, unstored and unacknowledged: telemetry that may be lost, never a fact."""
        try:
            await self._nc.publish(subject, data)
        except nats.errors.Error as exc:
            raise BusUnavailable(f"publishing to {subject} failed: {exc!r}") from exc

    async def on(
        self, subject: str, handler: Callable[[bytes], Awaitable[None]], *, queue: str = ""
    ) -> Callable[[], Awaitable[None]]:
        """Call `handler` with each core NATS message on `subject`; live when this returns.

        Returns the coroutine function that unsubscribes.
        """

        async def on_msg(msg: Msg) -> None:
            await handler(msg.data)

        try:
            sub = await self._nc.subscribe(subject, queue=queue, cb=on_msg)
            await self._nc.flush(timeout=5)
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusError(f"cannot subscribe to {subject}: {exc}") from exc

        async def close() -> None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

        return close

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

    async def job(self, seq: int) -> StoredMessage | None:
        """A job message still in the work queue, by stream sequence (None if it is gone)."""
        try:
            raw = await self._js.get_msg(streams.JOBS_STREAM, seq)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:
            raise BusError(f"cannot read job message {seq}: {exc}") from exc
        return StoredMessage.of(raw)

    async def stranded_jobs(self, durable: str, subject: str, limit: int = 1000) -> list[int]:
        """Job messages on `subject` that `durable` delivered and gave up on: nothing of it is waiting or in
        flight, yet they are still in the work queue (their max-deliveries advisory had no listener)."""
        try:
            info = await self._js.consumer_info(streams.JOBS_STREAM, durable)
            if info.num_pending or info.num_ack_pending:  # in flight: cannot be told from given up
                return []
            first = (info.ack_floor.stream_seq if info.ack_floor else 0) + 1
            last = info.delivered.stream_seq if info.delivered else 0
            out = []
            for seq in range(max(first, last - limit + 1), last + 1):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    if (await self._js.get_msg(streams.JOBS_STREAM, seq)).subject == subject:
                        out.append(seq)
        except nats.errors.Error as exc:
            raise BusError(f"cannot read consumer {durable!r}: {exc}") from exc
        return out

    async def drop_job(self, seq: int) -> None:
        """Remove a job message from the work queue (gone already is fine)."""
        try:
            await self._js.delete_msg(streams.JOBS_STREAM, seq)
        except nats.js.errors.NotFoundError:
            return
        except nats.errors.Error as exc:
            raise BusError(f"cannot remove job message {seq}: {exc}") from exc

    async def stream_leader(self, stream: str = streams.JOBS_STREAM) -> str | None:
        """The name of the server leading `stream` in a cluster (None on a single server)."""
        try:
            info = await self._js.stream_info(stream)
        except nats.errors.Error as exc:
            raise BusError(f"cannot read stream {stream!r}: {exc}") from exc
        return info.cluster.leader if info.cluster else None

    async def consumer_state(self, durable: str, stream: str = streams.JOBS_STREAM) -> ConsumerState:
        """How much work a shared durable consumer has: not yet delivered, delivered and unacked."""
        try:
            info = await self._js.consumer_info(stream, durable)
        except nats.errors.Error as exc:
            raise BusError(f"cannot read consumer {durable!r}: {exc}") from exc
        return ConsumerState(
            pending=info.num_pending or 0, unacked=info.num_ack_pending or 0, redelivered=info.num_redelivered or 0
        )

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
            out: list[StoredMessage] = []
            if not state.messages:  # empty: its sequence numbers are not messages
                return out
            for seq in range(max(state.first_seq, state.last_seq - limit + 1, 1), state.last_seq + 1):
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
