"""The local stack: nats-server, streams, and the three functions as processes on loopback.

`fermion up` runs it in the foreground; `fermion demo` starts one if none is up. Every piece of
state lives under FERMION_HOME, so two stacks with different homes and ports never collide, and is
its user's alone: the stack starts under umask 077 and so do its processes (directories 0700,
files 0600: keys, models, datasets and logs), and the folders a home already holds are closed to others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fermion.model_store import open_store

from . import processes
from .identity import LocalIdentity
from .nats import NatsServer, ServerError
from .provision import ProvisionSettings, provision_streams
from .settings import StackSettings

log = logging.getLogger("fermion.infra")

PRIVATE_UMASK = 0o077  # what the stack creates under FERMION_HOME: 0700 directories, 0600 files


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Create files and start processes under umask 077 (the process-wide umask, restored after)."""
    before = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(before)


def close_home(home: Path) -> None:
    """Make FERMION_HOME and the folders in it 0700, so what an older stack left 0755 is closed too."""
    for path in [home, *home.iterdir()]:
        if path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid():
            path.chmod(0o700)


@dataclass
class Process:
    """A function running as a child process, with its output in a log file."""

    name: str
    role: str
    """Its NATS identity (infra/identity.py)."""
    argv: list[str]
    health_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Its own settings beside the role's (a trainer's metrics port)."""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)


class Stack:
    """Starts and stops the local stack; stops only what it started."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.logs = settings.home / "logs"
        self.nats: NatsServer | None = None
        self.processes: list[Process] = []
        self.identity = LocalIdentity(settings.home)

    def env(self, role: str = "admin") -> dict[str, str]:
        """The environment a function of `role` gets: where things are, and its own NATS identity."""
        s = self.settings
        return {
            **os.environ,
            "FERMION_HOME": str(s.home),
            "FERMION_NATS_URL": s.nats_url,
            "FERMION_STORE_URL": self.store_url,
            "PYTHONUNBUFFERED": "1",
            **self.identity.env(role),
        }

    @property
    def store_url(self) -> str:
        return os.environ.get("FERMION_STORE_URL", self.settings.store_url)

    def start(self, timeout_s: float = 60.0) -> Stack:
        """Start nats-server, provision streams, start the functions, wait until all are healthy."""
        with private_umask():
            self.logs.mkdir(parents=True, exist_ok=True)
            close_home(self.settings.home)
            return self._start(timeout_s)

    def _start(self, timeout_s: float) -> Stack:
        s = self.settings
        try:
            # Signing keys, NATS users and the local admin API key, made once under FERMION_HOME.
            self.identity.ensure(open_store(self.store_url, s3_endpoint_url=s.s3_endpoint_url))
            self.nats = NatsServer(
                s.home / "nats",
                host=s.host,
                port=s.nats_port,
                log_file=self.logs / "nats.log",
                auth=self.identity.nats_config,
            ).start()
            # Provisioning is the admin's step: no function's NATS role may create or change streams.
            admin = self.identity.bus_settings("admin", s.nats_url)
            asyncio.run(provision_streams(ProvisionSettings(**admin.model_dump(exclude_unset=True))))
            python = sys.executable
            inference = [python, "-m", "fermion.functions.inference", "--log-level", "info", "--access-log"]
            uvicorn = [python, "-m", "uvicorn", "--host", s.host, "--no-access-log", "--log-level", "warning"]
            self.processes = [
                Process(
                    "inference",
                    "inference",
                    [*inference, "--host", s.host, "--port", str(s.inference_port)],
                    f"{s.inference_url}/v2/health/live",
                ),
                Process(
                    "ingest",
                    "ingest",
                    [*uvicorn, "--port", str(s.ingest_port), "fermion.functions.ingest.app:app"],
                    f"{s.ingest_url}/healthz",
                ),
                *[
                    Process(
                        f"trainer-{i}",
                        "trainer",
                        [python, "-m", "fermion.functions.trainer"],
                        env={"FERMION_METRICS_PORT": str(s.trainer_metrics_port + i if s.trainer_metrics_port else 0)},
                    )
                    for i in range(s.trainers)
                ],
                Process(  # drift and rollouts
                    "monitor",
                    "monitor",
                    [python, "-m", "fermion.functions.monitor"],
                    env={"FERMION_METRICS_PORT": str(s.monitor_metrics_port)},
                ),
            ]
            if s.drop_queue_url:
                bridge = [python, "-m", "fermion.functions.ingest.s3_events", "--queue-url", s.drop_queue_url]
                if s.s3_endpoint_url:
                    bridge += ["--endpoint-url", s.s3_endpoint_url]
                self.processes.append(Process("s3-bridge", "ingest", bridge))
            for p in self.processes:
                self.launch(p)
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, p: Process) -> None:
        """Start (or start again) one function process, appending to its log."""
        log_fd = os.open(self.logs / f"{p.name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(log_fd, 0o600)  # one an older stack left 0644
        with os.fdopen(log_fd, "ab") as out:
            env = {**self.env(p.role), **p.env}
            p.proc = subprocess.Popen(p.argv, env=env, stdout=out, stderr=subprocess.STDOUT, umask=PRIVATE_UMASK)

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for p in self.processes:
            while p.health_url:
                if p.proc and p.proc.poll() is not None:
                    raise ServerError(f"{p.name} exited with {p.proc.returncode}; see {self.logs / p.name}.log")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(p.health_url, timeout=1.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ServerError(f"{p.name} not healthy after {timeout_s:.0f}s; see {self.logs / p.name}.log")
                time.sleep(0.1)

    def failed(self) -> list[str]:
        """Names of the processes that have exited."""
        return [p.name for p in self.processes if p.proc and p.proc.poll() is not None]

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the functions (SIGTERM, then SIGKILL), then nats-server."""
        for p in self.processes:
            if p.proc and p.proc.poll() is None:
                p.proc.terminate()
        for p in self.processes:  # all were told at once; now wait for each
            if p.proc:
                processes.reap(p.proc, grace_s)
        self.processes = []
        if self.nats:
            self.nats.stop()
            self.nats = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_up(settings: StackSettings) -> bool:
    """Whether a stack already answers on these ports."""
    try:
        return all(
            httpx.get(url, timeout=1.0).status_code == 200
            for url in (f"{settings.ingest_url}/healthz", f"{settings.inference_url}/v2/health/live")
        )
    except httpx.HTTPError:
        return False
