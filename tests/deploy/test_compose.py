"""The compose document `fermion deploy compose up` writes: who holds which secret, what is published.

Rendered offline (no Docker): the identity is made under a temporary DIR as `up` makes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fermion.infra.compose import ComposeOptions, compose_file, write_secrets
from fermion.infra.identity import LocalIdentity

pytestmark = pytest.mark.deploy


@pytest.fixture
def document(tmp_path: Path) -> dict:
    opts = ComposeOptions(dir=tmp_path, ingest_port=18001, inference_port=18000)
    identity = LocalIdentity(tmp_path / "identity")
    identity.ensure_files()
    write_secrets(opts, identity)
    return json.loads(json.dumps(compose_file(opts, identity)))


def test_only_ingest_and_inference_publish_and_only_on_loopback(document: dict) -> None:
    published = {name: s["ports"] for name, s in document["services"].items() if "ports" in s}
    assert published == {"ingest": ["127.0.0.1:18001:8001"], "inference": ["127.0.0.1:18000:8080"]}


def test_the_private_signing_key_reaches_only_the_units_that_sign(document: dict) -> None:
    holders = {name for name, s in document["services"].items() if "signing_key" in s.get("secrets", [])}
    assert holders == {"ingest", "trainer"}
    trusted = json.loads(document["services"]["inference"]["environment"]["FERMION_TRUSTED_KEYS"])
    assert len(trusted) == 1 and trusted[0]


def test_no_password_or_key_is_in_an_environment_variable(document: dict, tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    values = [p.read_text().strip() for p in secrets_dir.iterdir()]
    for name, service in document["services"].items():
        env = " ".join(str(v) for v in service.get("environment", {}).values())
        leaked = [v[:6] for v in values if len(v) > 8 and v in env]
        assert not leaked, f"{name} carries a secret in its environment"
    for name, service in document["services"].items():
        for secret in service.get("secrets", []):
            assert (secrets_dir / secret).is_file(), (name, secret)


def test_each_unit_is_its_own_nats_user_and_only_provision_provisions(document: dict) -> None:
    services = document["services"]
    for role in ("ingest", "inference", "trainer", "monitor"):
        env = services[role]["environment"]
        assert env["FERMION_NATS_USER"] == role
        assert env["FERMION_PROVISION"] == "false"
        assert services[role]["depends_on"] == {"provision": {"condition": "service_completed_successfully"}}
        assert services[role]["restart"] == "unless-stopped"
    assert services["provision"]["environment"]["FERMION_NATS_USER"] == "admin"
    assert services["provision"]["command"] == ["python", "-m", "fermion.infra.provision"]
