"""A real ingest process behind `fermion up`'s NATS permissions, for CLI commands that must go over HTTP.

nats-server runs with the identities of infra/identity.py (no anonymous user); the streams are
provisioned as `admin`; ingest runs under uvicorn as the `ingest` role with its own store and
signing key. The CLI is then pointed at it with FERMION_URL and FERMION_API_KEY alone, its
FERMION_HOME an empty folder: a command that opened a store or NATS itself would find nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from fermion.events import Bus, ConsumerPolicy
from fermion.infra import NatsServer
from fermion.infra.identity import LocalIdentity
from fermion.model_store import Registry, StoreSettings, open_registry
from tests.helpers import free_port, wait_until


@dataclass
class SecuredIngest:
    """Where the ingest answers, its store (for setting the scene), and the admin NATS identity."""

    url: str
    admin_key: str
    home: Path
    nats: NatsServer
    identity: LocalIdentity
    registry: Registry
    log: Path

    def cli_env(self, client_home: Path, key: str | None = None) -> dict[str, str]:
        """A CLI that knows only the URL and a key (its own FERMION_HOME is empty)."""
        client_home.mkdir(parents=True, exist_ok=True)
        return {
            "FERMION_URL": self.url,
            "FERMION_API_KEY": key or self.admin_key,
            "FERMION_HOME": str(client_home),
            "FERMION_STORE_URL": (client_home / "nothing-here").as_uri(),
            "FERMION_NATS_URL": "nats://127.0.0.1:1",  # nothing listens: a command on NATS would fail
        }

    async def admin_bus(self) -> Bus:
        """A bus connection as the stack's admin (to watch what ingest published)."""
        return await Bus.from_settings(self.identity.bus_settings("admin", self.nats.url), name="test-admin")


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def secured_ingest(home: Path, extra_env: dict[str, str] | None = None) -> Iterator[SecuredIngest]:
    """nats-server with the roles' permissions, streams provisioned, ingest as the `ingest` role."""
    identity = LocalIdentity(home).ensure(open_registry(StoreSettings(home=home)).store)
    # Opened once the signing key exists: the scene it sets is signed, as a trainer's versions are,
    # and the ingest (which verifies before it shows or moves to a version) accepts it.
    registry = open_registry(StoreSettings(home=home))
    with NatsServer(home / "nats-data", auth=identity.nats_config) as nats:

        async def provision() -> None:
            bus = await Bus.from_settings(identity.bus_settings("admin", nats.url), name="provision")
            await bus.provision(ConsumerPolicy(ack_wait_s=10, max_deliver=3))
            await bus.close()

        asyncio.run(provision())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FERMION_")},
            "FERMION_HOME": str(home),
            "FERMION_NATS_URL": nats.url,
            "PYTHONUNBUFFERED": "1",
            **identity.env("ingest"),
            **(extra_env or {}),
        }
        port = free_port()
        log = home / "ingest.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), INGEST_APP],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _answers(url) or proc.poll() is not None, 60, "ingest to answer /healthz")
            assert proc.poll() is None, log.read_text()[-3000:]
            yield SecuredIngest(url, identity.admin_key() or "", home, nats, identity, registry, log)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


INGEST_APP = "fermion.functions.ingest.app:app"
