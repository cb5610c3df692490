"""`fermion up`'s supervisor: every function, and nats-server, SIGKILLed under a request loop comes back.

Each kill is timed from the SIGKILL to the moment the function answers ready again (ingest: NATS
connected and the store answering; inference: live; a trainer: consuming again), and printed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from fermion.infra import Stack
from fermion.infra.supervisor import Supervisor
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _recover(supervisor: Supervisor, kill: Callable[[], None], back: Callable[[], bool], said: list[str]) -> float:
    """Seconds from `kill()` until `back()` holds, running the supervisor's checks meanwhile."""
    started = time.monotonic()
    kill()
    deadline = started + 90
    while not back():
        said += supervisor.check()
        assert time.monotonic() < deadline, f"not back after 90s; the supervisor said {said}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_killed_functions_and_nats_are_restarted(stack: Stack) -> None:
    s = stack.settings
    supervisor = Supervisor(stack, first_delay_s=0.2)
    said: list[str] = []
    stop = threading.Event()
    answered = [0]

    def load() -> None:  # a steady request loop against both functions while they are killed
        with httpx.Client(timeout=2) as client:
            while not stop.is_set():
                for url in (f"{s.ingest_url}/readyz", f"{s.inference_url}/v2/health/ready"):
                    try:
                        answered[0] += client.get(url).status_code == 200
                    except httpx.HTTPError:
                        time.sleep(0.02)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    procs = {p.name: p for p in stack.processes}
    trainer_log = s.home / "logs" / "trainer-0.log"
    wait_until(lambda: "trainers: consuming" in trainer_log.read_text(errors="replace"), 60, "the trainer to consume")
    consuming = trainer_log.read_text(errors="replace").count("trainers: consuming")
    times: dict[str, float] = {}
    try:
        for name, url in (("inference", f"{s.inference_url}/v2/health/ready"), ("ingest", f"{s.ingest_url}/readyz")):
            pid = procs[name].proc.pid  # type: ignore[union-attr]
            times[name] = _recover(supervisor, lambda pid=pid: os.kill(pid, signal.SIGKILL), lambda u=url: _ok(u), said)
        trainer_pid = procs["trainer-0"].proc.pid  # type: ignore[union-attr]
        times["trainer"] = _recover(
            supervisor,
            lambda: os.kill(trainer_pid, signal.SIGKILL),
            lambda: trainer_log.read_text(errors="replace").count("trainers: consuming") > consuming,
            said,
        )
        assert stack.nats is not None
        nats_pid = stack.nats.pid
        ingest_ready = f"{s.ingest_url}/readyz"
        times["nats-server (ingest ready again)"] = _recover(
            supervisor,
            lambda: os.kill(nats_pid, signal.SIGKILL),
            lambda: stack.nats is not None and stack.nats.pid != nats_pid and _ok(ingest_ready),
            said,
        )
    finally:
        stop.set()
        loader.join(5)
    assert any("inference exited with -9; restarting" in line for line in said), said
    assert any("nats-server died" in line for line in said) and any("nats-server restarted" in line for line in said)
    assert not stack.failed()
    assert answered[0] > 0
    print("\nrecovery after SIGKILL: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
