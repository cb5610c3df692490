"""infra/aws/ecs.yml: NATS keeps JetStream on EFS, the trainers scale from zero on the backlog of every
consumer they serve (published by infra/jetstream_lag.py, checked here against a real nats-server), the
trainer alone holds the signing key, and no secret sits in a task definition."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fermion.events import Bus, streams, subjects
from fermion.infra.jetstream_lag import TRAINER_CONSUMERS, read_backlog
from fermion.infra.nats import nats_server_binary
from tests.deploy.test_aws_iam import ecs_template
from tests.helpers import free_port

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def res() -> dict[str, Any]:
    return dict(ecs_template()["Resources"])


def _containers(res: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    return {c["Name"]: c for c in res[task]["Properties"]["ContainerDefinitions"]}


def test_nats_keeps_jetstream_on_encrypted_efs_one_writer_at_a_time(res: dict[str, Any]) -> None:
    task = res["NatsTask"]["Properties"]
    [volume] = task["Volumes"]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED" and efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    assert res[efs["FilesystemId"]["Ref"]]["Properties"]["Encrypted"] is True
    nats = _containers(res, "NatsTask")["nats"]
    [mount] = nats["MountPoints"]
    assert mount["SourceVolume"] == volume["Name"] and "-sd /data/jetstream" in nats["Command"][0]
    deployment = res["NatsService"]["Properties"]["DeploymentConfiguration"]
    assert deployment["MaximumPercent"] == 100  # never two servers on the same files
    assert "NatsDiscovery" in str(res["NatsService"]["Properties"]["ServiceRegistries"])  # nats.fermion-STAGE.local


def test_trainers_scale_from_zero_on_the_backlog_the_sidecar_publishes(res: dict[str, Any]) -> None:
    target = res["TrainerScaling"]["Properties"]
    assert (target["MinCapacity"], target["ScalableDimension"]) == (0, "ecs:service:DesiredCount")
    sidecar = _containers(res, "NatsTask")["backlog"]
    assert sidecar["Command"][:3] == ["python", "-m", "fermion.infra.jetstream_lag"]
    namespace = sidecar["Command"][sidecar["Command"].index("--namespace") + 1]
    alarms = {n: r["Properties"] for n, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    actions = {a["Ref"] for p in alarms.values() for a in p["AlarmActions"]}
    assert actions == {"TrainerScaleOut", "TrainerScaleIn"}
    for p in alarms.values():
        assert (p["Namespace"], p["MetricName"]) == (namespace, "Backlog")
    # Every durable consumer the trainer serves counts, not only trainings.
    assert {d for _, d in TRAINER_CONSUMERS} == {
        streams.TRAINER_DURABLE,
        streams.SWEEP_DURABLE,
        streams.SCORER_DURABLE,
        streams.PIPELINE_DURABLE,
        streams.RETRAIN_DURABLE,
    }


def test_only_the_trainer_gets_the_signing_key_and_no_secret_is_plain(res: dict[str, Any]) -> None:
    holders = set()
    for name, r in res.items():
        if r["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for c in r["Properties"]["ContainerDefinitions"]:
            for s in c.get("Secrets", []):
                if "signing-key" in s["ValueFrom"]["Fn::Sub"]:
                    holders.add(name)
            for e in c.get("Environment", []):
                assert "PASSWORD" not in e["Name"] or e["Name"].endswith("_SECRET"), (name, e)
                assert "KEY" not in e["Name"] or e["Name"].endswith("_FILE"), (name, e)
    assert holders == {"TrainerTask"}
    trainer = _containers(res, "TrainerTask")["trainer"]
    env = {e["Name"]: e["Value"] for e in trainer["Environment"]}
    assert env["FERMION_SIGNING_KEY_FILE"] in trainer["Command"][0]  # written from the secret, 0600
    assert "umask 077" in trainer["Command"][0]


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port, monitor = free_port(), free_port()
    cmd = [
        str(nats_server_binary()),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "-sd",
        str(tmp_path),
        "-m",
        str(monitor),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{monitor}"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"nats://127.0.0.1:{port}", url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
async def test_the_backlog_counts_waiting_work_of_every_trainer_consumer(monitored_nats: tuple[str, str]) -> None:
    nats_url, monitor_url = monitored_nats
    bus = await Bus.connect(nats_url)
    try:
        await bus.provision()
        assert set((await asyncio.to_thread(read_backlog, monitor_url)).values()) == {0}
        await bus.publish_bytes(subjects.TRAINING_REQUESTED, b"{}", msg_id="t1")
        await bus.publish_bytes(subjects.TRAINING_SWEEP, b"{}", msg_id="s1")
        await bus.publish_bytes(subjects.DATASETS_UPLOADED, b"{}", msg_id="d1")
        await bus.publish_bytes(subjects.SCORING_REQUESTED, b"{}", msg_id="c1")
        counts = await asyncio.to_thread(read_backlog, monitor_url)
    finally:
        await bus.close()
    assert counts == {
        f"{streams.JOBS_STREAM}/{streams.TRAINER_DURABLE}": 1,
        f"{streams.JOBS_STREAM}/{streams.SWEEP_DURABLE}": 1,
        f"{streams.JOBS_STREAM}/{streams.SCORER_DURABLE}": 1,
        f"{streams.EVENTS_STREAM}/{streams.PIPELINE_DURABLE}": 1,
        f"{streams.EVENTS_STREAM}/{streams.RETRAIN_DURABLE}": 0,
    }
