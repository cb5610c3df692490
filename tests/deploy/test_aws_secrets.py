"""On AWS a unit's NATS password is read at run time from Secrets Manager (FERMION_NATS_PASSWORD_SECRET),
never put in a plain environment variable: here against LocalStack's Secrets Manager and a nats-server
that refuses anyone without the role's password."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import boto3
import pytest

from fermion.events import Bus, BusError, BusSettings
from fermion.events.secrets import secret_password
from fermion.infra import NatsServer
from fermion.infra.identity import LocalIdentity
from fermion.infra.localstack import LocalStack

pytestmark = [pytest.mark.deploy, pytest.mark.integration]


@pytest.fixture
def secrets_env(localstack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": localstack.endpoint_url,
    }.items():
        monkeypatch.setenv(name, value)
    secret_password.cache_clear()
    with closing(boto3.client("secretsmanager")) as client:
        yield client
    secret_password.cache_clear()


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, LocalIdentity]]:
    identity = LocalIdentity(tmp_path / "identity")
    identity.ensure_files()
    with NatsServer(tmp_path / "nats", auth=identity.nats_config) as server:
        yield server, identity


async def test_the_password_comes_from_secrets_manager_when_the_unit_connects(
    secrets_env: object, secured_nats: tuple[NatsServer, LocalIdentity]
) -> None:
    server, identity = secured_nats
    client = secrets_env
    name = f"fermion/test/nats/ingest-{uuid.uuid4().hex[:8]}"
    payload = json.dumps({"username": "ingest", "password": identity.nats_password("ingest")})
    arn = client.create_secret(Name=name, SecretString=payload)["ARN"]  # type: ignore[attr-defined]
    settings = BusSettings(nats_url=server.url, nats_user="ingest", nats_password_secret=arn, provision=False)
    assert settings.nats_password is None  # nothing secret in the environment
    bus = await Bus.from_settings(settings, name="ingest")
    assert bus.connected
    await bus.close()
    with pytest.raises(BusError, match="could not be read"):
        missing = BusSettings(nats_url=server.url, nats_user="ingest", nats_password_secret=name + "-gone")
        await Bus.from_settings(missing, name="ingest")
