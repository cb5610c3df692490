"""docker-compose.yml builds from the images under infra/docker and publishes on loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.deploy


def test_compose_services_use_the_repository_images_and_loopback_ports() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    built = {name: s["build"]["dockerfile"] for name, s in services.items() if "build" in s}
    assert set(built) == {"ingest", "inference", "trainer"}
    for dockerfile in built.values():
        assert (REPO / dockerfile).is_file(), dockerfile
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    # Inference's container port is the one its image listens on.
    assert services["inference"]["ports"] == ["127.0.0.1:8000:8080"]
    assert '--port", "8080"' in (REPO / built["inference"]).read_text()
    assert services["ingest"]["environment"]["FERMION_STORE_URL"].startswith("s3://")
