"""The entry point on either HTTP server and with several workers: real processes on loopback over a
registry with a signed model `lin`, answering the same as each other; SIGTERM ends them, after the audit
records of their last requests are out on a real nats-server (so too at an in-process app's lifespan
end); a server that is not installed is a one-line error."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from fermion.events import Bus, parse_event, subjects
from fermion.events.traffic import TelemetryBatch
from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.servers import GRACE_S
from fermion.functions.inference.settings import InferenceSettings
from fermion.infra.nats import NatsServer
from fermion.model_store import StoreSettings, generate_key_pair, open_registry
from tests.helpers import Frozen, api_key, bearer, free_port, linear_draft, linear_onnx, wait_until

pytestmark = pytest.mark.integration
needs_granian = pytest.mark.skipif(
    importlib.util.find_spec("granian") is None, reason="granian is not installed (the `granian` extra)"
)
ROW = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": np.arange(8, dtype=np.float32).tolist()}
BODY = {"id": "same-request", "inputs": [ROW]}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A FERMION_HOME with model `lin` registered (signed, trusted), and an infer key's headers."""
    home = tmp_path_factory.mktemp("servers-home")
    generate_key_pair(home / "keys")
    registry = open_registry(StoreSettings(home=home))
    registry.register("default", "lin", {"model.onnx": linear_onnx(n_in=4, n_out=3, seed=1)}, linear_draft())
    return home, bearer(api_key(registry, "infer"))


class Served:
    """`python -m fermion.functions.inference *args` on a free loopback port; stopped by the test."""

    def __init__(self, home: Path, *args: str, **extra_env: str) -> None:
        self.port = free_port()
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]', **extra_env}
        argv = [sys.executable, "-m", "fermion.functions.inference", "--port", str(self.port), *args]
        self.log = home / f"inference-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        wait_until(self._live, 60, f"the entry point with {args} to answer")

    def _live(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            return self.client.get("/v2/health/live").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(GRACE_S + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serve(home: tuple[Path, dict[str, str]]) -> Iterator[type[Served]]:
    """Start entry points over `home`; every one started is stopped after the test."""
    started: list[Served] = []

    class Tracked(Served):
        def __init__(self, *args: str, **extra_env: str) -> None:
            super().__init__(home[0], *args, **extra_env)
            started.append(self)

    yield Tracked  # type: ignore[misc]
    for s in started:
        s.stop()


def _answers(server: Served, headers: dict[str, str]) -> dict[str, object]:
    """What a client sees of the readiness routes and one inference request."""
    live, ready = server.client.get("/v2/health/live"), server.client.get("/v2/health/ready")
    infer = server.client.post("/v2/models/lin/infer", json=BODY, headers=headers)
    return {
        "live": (live.status_code, live.content),
        "ready": (ready.status_code, ready.content),
        "infer": (infer.status_code, infer.headers["content-type"], infer.content),
    }


@needs_granian
def test_uvicorn_and_granian_answer_identically(home: tuple[Path, dict[str, str]], serve: type[Served]) -> None:
    uvicorn, granian = serve("--server", "uvicorn"), serve("--server", "granian")
    on_uvicorn, on_granian = _answers(uvicorn, home[1]), _answers(granian, home[1])
    assert on_uvicorn["infer"][0] == 200 and on_uvicorn["ready"][0] == 200, on_uvicorn  # type: ignore[index]
    assert on_granian == on_uvicorn
    unauthorized = granian.client.post("/v2/models/lin/infer", json=BODY)
    assert unauthorized.status_code == 401 == uvicorn.client.post("/v2/models/lin/infer", json=BODY).status_code


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("server", ["uvicorn", pytest.param("granian", marks=needs_granian)])
def test_two_workers_share_the_port_and_stop_together(
    home: tuple[Path, dict[str, str]], serve: type[Served], server: str
) -> None:
    served = serve("--server", server, "--workers", "2")
    workers = _children(served.proc.pid)
    assert len(workers) == 2
    for _ in range(20):  # a new connection each time: the kernel hands them to either worker
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}") as fresh:
            r = fresh.post("/v2/models/lin/infer", json=BODY, headers=home[1])
            assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [2, 3]
    wait_until(lambda: all(Path(f"/proc/{w}/maps").exists() for w in workers), 1, "both workers alive")
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(GRACE_S + 5) == 0
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "a worker outlived its parent"


@needs_granian
def test_sigterm_ends_granian_within_its_grace_period(serve: type[Served]) -> None:
    served = serve("--server", "granian", "--log-level", "info")
    assert served.client.get("/v2/health/ready").status_code == 200
    started = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(GRACE_S + 5) == 0
    assert time.monotonic() - started < GRACE_S
    out = served.log.read_text()
    assert "Traceback" not in out, out
    assert '"logger": "_granian"' in out, out  # granian's lines through Fermion's handler, as JSON


def test_granian_not_installed_is_a_one_line_error() -> None:
    port = free_port()
    hide = "import sys; sys.modules['granian'] = None"  # what an image without the extra looks like to imports
    run = f"from fermion.functions.inference.__main__ import main; main(['--server', 'granian', '--port', '{port}'])"
    done = subprocess.run([sys.executable, "-c", f"{hide}; {run}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "--server granian needs the granian package: pip install 'fermion[granian]'"


def test_workers_must_be_a_positive_count() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fermion.functions.inference", "--port", str(free_port()), "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not a count of at least 1: '0'" in done.stderr


def test_a_worker_that_dies_stops_the_others(serve: type[Served]) -> None:
    served = serve("--workers", "2")
    dead, other = _children(served.proc.pid)
    os.kill(dead, signal.SIGKILL)
    assert served.proc.wait(GRACE_S + 5) == 1  # the orchestrator sees the unit fail and restarts it whole
    wait_until(lambda: not Path(f"/proc/{other}").exists(), 5, "the other worker to end")
    assert "ended (exit code -9): stopping the others" in served.log.read_text()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own (it may be frozen) with Fermion's streams (the audit records' among them)."""

    async def provision(server: NatsServer) -> None:
        bus = await Bus.connect(server.url)
        try:
            await bus.provision()
        finally:
            await bus.close()

    with NatsServer(tmp_path / "nats") as server:
        asyncio.run(provision(server))
        yield server


def _refusals(nats: NatsServer, key: str) -> list[str]:
    """The `request.refused` audit records on the bus that name `key`: their targets."""

    async def read() -> list[str]:
        bus = await Bus.connect(nats.url)
        try:
            records = [parse_event(m.data) for m in await bus.history("fermion.audit.>")]
        finally:
            await bus.close()
        key_id = key.split("_")[1]
        audits = [r.data for r in records]
        return [a.target for a in audits if a.principal == key_id and a.action == "request.refused"]  # type: ignore[attr-defined]

    return asyncio.run(read())


def _read_only_key(home: Path) -> str:
    """A key that may read but not infer: an infer request with it is refused, and audited."""
    return api_key(open_registry(StoreSettings(home=home)), "read")


STOPPED_BY = {"uvicorn": -signal.SIGTERM, "granian": 0}  # uvicorn raises the signal again once it has stopped


@pytest.mark.parametrize("server", ["uvicorn", pytest.param("granian", marks=needs_granian)])
def test_sigterm_waits_for_the_audit_records_of_the_last_requests(
    home: tuple[Path, dict[str, str]], serve: type[Served], nats: NatsServer, server: str
) -> None:
    key = _read_only_key(home[0])
    served = serve("--server", server, FERMION_NATS_URL=nats.url)
    with Frozen(nats):  # the refusal's record cannot go out (nor its connection be made) until NATS resumes
        assert served.client.post("/v2/models/lin/infer", json=BODY, headers=bearer(key)).status_code == 403
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the server has stopped serving by now (uvicorn notices a signal within 0.1 s)
        assert served.proc.poll() is None, "exited with an audit record still going out"
    assert served.proc.wait(GRACE_S + 5) == STOPPED_BY[server]
    assert _refusals(nats, key) == ["POST /v2/models/lin/infer"], served.log.read_text()


def test_sigterm_sends_the_telemetry_of_the_last_interval(
    home: tuple[Path, dict[str, str]], serve: type[Served], nats: NatsServer
) -> None:
    async def scenario() -> list[TelemetryBatch]:
        bus = await Bus.connect(nats.url)
        batches: list[TelemetryBatch] = []

        async def received(data: bytes) -> None:
            batches.append(TelemetryBatch.model_validate_json(data))

        unsubscribe = await bus.on(subjects.TELEMETRY, received)
        try:
            # An interval far longer than the test: only the stop can send what the request left.
            served = serve(FERMION_NATS_URL=nats.url, FERMION_TELEMETRY_INTERVAL_S="300")
            r = await asyncio.to_thread(served.client.post, "/v2/models/lin/infer", json=BODY, headers=home[1])
            assert r.status_code == 200
            served.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(served.proc.wait, GRACE_S + 5) == STOPPED_BY["uvicorn"]
            async with asyncio.timeout(5):
                while not batches:
                    await asyncio.sleep(0.05)
        finally:
            await unsubscribe()
            await bus.close()
        return batches

    (batch,) = asyncio.run(scenario())
    assert [(v.name, v.version, v.requests) for v in batch.stats] == [("lin", 1, 1)]


def test_the_lifespan_end_closes_the_audit_connection(home: tuple[Path, dict[str, str]], nats: NatsServer) -> None:
    key = _read_only_key(home[0])
    settings = InferenceSettings(home=home[0], providers=["CPUExecutionProvider"], nats_url=nats.url)
    runtime = ModelRuntime(open_registry(StoreSettings(home=home[0])), settings)
    app = create_app(lambda: runtime, lambda: settings)
    with TestClient(app) as client:
        assert client.post("/v2/models/lin/infer", json=BODY, headers=bearer(key)).status_code == 403
    assert not app.audit.connected
    assert _refusals(nats, key) == ["POST /v2/models/lin/infer"]
