"""Least privilege on the bus (issue 25), checked as a matrix on a real nats-server with `fermion up`'s roles.

For every role: each grant in its row of `infra.identity.PERMISSIONS` works (what its code needs: the
end-to-end tests run every function under these same permissions), and every operation in the deny
list is refused by the server: other roles' inboxes, stream creation, change, deletion and purge,
creating or deleting durable consumers, publishing other roles' events. Two attacks from the issue
are replayed whole: rewriting a durable consumer's filter, and cutting the event log short.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from fermion.events import Bus, streams, subjects
from fermion.events.connection import nats_options
from fermion.infra.identity import PERMISSIONS, ROLES, LocalIdentity
from fermion.infra.nats import NatsServer
from fermion.model_store import LocalDirStore

pytestmark = pytest.mark.integration

JS = "$JS.API"
EVENTS, JOBS = streams.EVENTS_STREAM, streams.JOBS_STREAM
DURABLES = [
    (JOBS, streams.TRAINER_DURABLE),
    (JOBS, streams.SWEEP_DURABLE),
    (JOBS, streams.FEDERATION_DURABLE),
    (JOBS, streams.SCORER_DURABLE),
    (EVENTS, streams.PIPELINE_DURABLE),
    (EVENTS, streams.RETRAIN_DURABLE),
]
# Every event subject some role publishes: a role may publish only those in its own row.
EVENT_SUBJECTS = [
    subjects.DATASETS_UPLOADED,
    subjects.TRAINING_REQUESTED,
    subjects.TRAINING_SWEEP,
    subjects.TRAINING_PROGRESS,
    subjects.TRAINING_COMPLETED,
    subjects.TRAINING_FAILED,
    subjects.cancel("job1"),
    subjects.MODELS_PUBLISHED,
    subjects.MODELS_PROMOTED,
    f"{subjects.MODELS_ROLLOUT}.started",
    f"{subjects.MODELS_ROLLOUT}.stepped",
    f"{subjects.MODELS_ROLLOUT}.rolled_back",
    subjects.MODELS_DRIFT_DETECTED,
    subjects.MODELS_DRIFT_JUDGED,
    subjects.MODELS_LABELS,
    subjects.TELEMETRY,
    subjects.dead_letter(subjects.TRAINING_REQUESTED),
    subjects.audit("alias.moved"),
    subjects.FEDERATED_REQUESTED,
    subjects.FEDERATED_ROUND_STARTED,
    subjects.FEDERATED_ROUND_COMPLETED,
    subjects.FEDERATED_UPDATE_SUBMITTED,  # the participants' (sites outside the platform: no role here)
    subjects.FEDERATED_UPDATE_REFUSED,
    subjects.FEDERATED_COMPLETED,
    subjects.FEDERATED_FAILED,
    subjects.dead_letter(subjects.FEDERATED_REQUESTED),
    subjects.SCORING_REQUESTED,
    subjects.SCORING_PROGRESS,
    subjects.SCORING_COMPLETED,
    subjects.SCORING_FAILED,
    subjects.dead_letter(subjects.SCORING_REQUESTED),
]


class Conn:
    """One role's raw connection, recording the permission violations the server reports."""

    def __init__(self) -> None:
        self.nc: Client
        self.violations: list[str] = []

    async def _error(self, exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():
            self.violations.append(str(exc))

    async def refused(self, action: str, subject: str) -> bool:
        """Whether the server refuses `action` ("publish" or "subscribe") on `subject`."""
        self.violations.clear()
        if action == "publish":
            await self.nc.publish(subject, b"{}")
        else:
            sub = await self.nc.subscribe(subject)
        await self.nc.flush()  # the server answers -ERR before the PONG
        await asyncio.sleep(0.05)  # the error callback runs as a task
        if action == "subscribe":
            await sub.unsubscribe()
        return any(f'"{subject.lower()}"' in v.lower() for v in self.violations)  # nats-py lowers the text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, LocalIdentity]]:
    home = tmp_path_factory.mktemp("privileges")
    identity = LocalIdentity(home).ensure(LocalDirStore(home / "store"))
    with NatsServer(home / "nats", auth=identity.nats_config) as server:

        async def provision() -> None:
            bus = await Bus.from_settings(identity.bus_settings("admin", server.url), name="admin")
            try:
                await bus.provision()
            finally:
                await bus.close()

        asyncio.run(provision())
        yield server, identity


async def _connect(world: tuple[NatsServer, LocalIdentity], role: str) -> Conn:
    server, identity = world
    conn = Conn()
    conn.nc = await nats.connect(
        server.url, error_cb=conn._error, allow_reconnect=False, **nats_options(identity.bus_settings(role, server.url))
    )
    return conn


def _concrete(subject: str) -> str:
    """A subject a wildcard grant covers."""
    return subject.replace(">", "x.y").replace("*", "x")


def _denied(role: str) -> list[tuple[str, str]]:
    """What `role` must never be able to do."""
    out = [("subscribe", "_INBOX.>"), ("subscribe", ">")]
    out += [("subscribe", f"_INBOX.{other}.x") for other in ROLES if other not in (role, "admin")]
    for stream in (EVENTS, JOBS):
        for verb in ("CREATE", "UPDATE", "DELETE", "PURGE"):
            out.append(("publish", f"{JS}.STREAM.{verb}.{stream}"))
    for stream, durable in DURABLES:
        out += [
            ("publish", f"{JS}.CONSUMER.CREATE.{stream}.{durable}"),
            ("publish", f"{JS}.CONSUMER.CREATE.{stream}.{durable}.fermion.>"),
            ("publish", f"{JS}.CONSUMER.DURABLE.CREATE.{stream}.{durable}"),
            ("publish", f"{JS}.CONSUMER.DELETE.{stream}.{durable}"),
        ]
    granted = PERMISSIONS[role]["publish"]
    out += [("publish", s) for s in EVENT_SUBJECTS if not any(_covers(g, s) for g in granted)]
    return out


def _covers(grant: str, subject: str) -> bool:
    g, s = grant.split("."), subject.split(".")
    for i, token in enumerate(g):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(g) == len(s)


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
async def test_each_role_has_its_grants_and_nothing_else(world: tuple[NatsServer, LocalIdentity], role: str) -> None:
    conn = await _connect(world, role)
    try:
        for action in ("publish", "subscribe"):
            for grant in PERMISSIONS[role][action]:
                assert not await conn.refused(action, _concrete(grant)), f"{role} lost its grant to {action} {grant}"
        for action, subject in _denied(role):
            assert await conn.refused(action, subject), f"{role} may {action} {subject}"
    finally:
        await conn.nc.close()


async def test_a_role_gets_its_replies_on_its_own_inbox(world: tuple[NatsServer, LocalIdentity]) -> None:
    """Request-reply still works: the trainer's JetStream calls come back on `_INBOX.trainer.…`."""
    server, identity = world
    bus = await Bus.from_settings(identity.bus_settings("trainer", server.url), name="trainer")
    try:
        state = await bus.consumer_state(streams.TRAINER_DURABLE)  # a request: BusError if no reply came back
        assert state.unacked == 0
        assert bus._nc.new_inbox().startswith("_INBOX.trainer.")
    finally:
        await bus.close()


async def test_no_role_can_rewrite_a_durable_consumer_nor_cut_the_log(world: tuple[NatsServer, LocalIdentity]) -> None:
    """The issue's attacks: ingest rewrote the pipelines consumer's filter; monitor cut the event log to one message."""
    server, identity = world
    admin = await Bus.from_settings(identity.bus_settings("admin", server.url), name="admin")
    js = admin._nc.jetstream()
    before = (await js.consumer_info(EVENTS, streams.PIPELINE_DURABLE)).config.filter_subject
    limits = (await js.stream_info(EVENTS)).config.max_msgs
    for role in ("ingest", "trainer", "monitor", "federated"):
        conn = await _connect(world, role)
        try:
            hijack = {
                "stream_name": EVENTS,
                "config": {
                    "durable_name": streams.PIPELINE_DURABLE,
                    "name": streams.PIPELINE_DURABLE,
                    "filter_subject": "fermion.>",
                    "ack_policy": "explicit",
                },
            }
            try:  # the unnamed-consumer subject is granted to log readers: the server must refuse a durable there
                reply = await conn.nc.request(f"{JS}.CONSUMER.CREATE.{EVENTS}", json.dumps(hijack).encode(), timeout=1)
            except nats.errors.TimeoutError:
                pass  # refused by the role's permissions
            else:
                assert "error" in json.loads(reply.data), reply.data
            cut = {"name": EVENTS, "subjects": ["fermion.>"], "max_msgs": 1}
            with pytest.raises(nats.errors.TimeoutError):
                await conn.nc.request(f"{JS}.STREAM.UPDATE.{EVENTS}", json.dumps(cut).encode(), timeout=1)
        finally:
            await conn.nc.close()
    try:
        assert (await js.consumer_info(EVENTS, streams.PIPELINE_DURABLE)).config.filter_subject == before
        assert (await js.stream_info(EVENTS)).config.max_msgs == limits
    finally:
        await admin.close()


async def test_the_coordinator_can_neither_start_a_federation_nor_speak_for_a_participant(
    world: tuple[NatsServer, LocalIdentity],
) -> None:
    """Beyond the table: the `federated` row grants no request (ingest's), no update (a participant's),
    no other unit's work and no read of the log but its watch; a grant added there by mistake fails here."""
    conn = await _connect(world, "federated")
    try:
        for subject in (
            subjects.FEDERATED_REQUESTED,
            subjects.FEDERATED_UPDATE_SUBMITTED,
            subjects.MODELS_PUBLISHED,
            subjects.dead_letter(subjects.TRAINING_REQUESTED),
            f"{JS}.CONSUMER.MSG.NEXT.{JOBS}.{streams.TRAINER_DURABLE}",
            f"{JS}.STREAM.MSG.GET.{JOBS}",
            f"{JS}.STREAM.MSG.GET.{EVENTS}",
            f"{JS}.STREAM.INFO.{EVENTS}",
        ):
            assert await conn.refused("publish", subject), f"federated may publish {subject}"
    finally:
        await conn.nc.close()


def test_units_under_these_roles_do_not_provision(tmp_path: Path) -> None:
    """A unit started by `fermion up` only checks the consumers exist; it holds no grant to create them."""
    for role in ("trainer", "federated"):
        assert LocalIdentity(tmp_path).env(role)["FERMION_PROVISION"] == "false"
    assert "FERMION_PROVISION" not in LocalIdentity(tmp_path).env("admin")
