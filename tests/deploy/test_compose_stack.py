"""The platform in containers, as the README's Deploy section runs it: `fermion deploy compose up`.

Every image is built here (FROM the local Debian base: no registry is reachable), NATS and the S3
store are stand-ins built the same way, and the CLI, pointed at the printed URLs with the printed
admin key file, uploads, trains, and gets a signed version served by the inference container. A
trainer container killed mid-job still gives exactly one version, and `down --volumes` leaves no
container, network or volume behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from fermion.training.checkpoints import CheckpointPolicy
from tests.helpers import free_port
from tests.helpers.containers import require_docker

pytestmark = [pytest.mark.deploy, pytest.mark.containers, pytest.mark.timeout(900)]


def _fermion(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "fermion", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _docker_ids(kind: str, project: str, service: str | None = None) -> list[str]:
    filters = ["--filter", f"label=com.docker.compose.project={project}"]
    if service:
        filters += ["--filter", f"label=com.docker.compose.service={service}"]
    cmd = ["docker", *(["ps", "-a"] if kind == "container" else [kind, "ls"]), "-q", *filters]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()


class Deployed:
    """A running deployment and the environment that points the CLI at it."""

    def __init__(self, directory: Path, project: str, info: dict, started: float) -> None:
        self.dir, self.project, self.info, self.started = directory, project, info, started
        self.up_s = time.monotonic() - started
        self.cli_env = {
            **os.environ,
            "FERMION_INGEST_URL": info["ingest_url"],
            "FERMION_INFERENCE_URL": info["inference_url"],
            "FERMION_API_KEY": Path(info["admin_key_file"]).read_text().strip(),
            "FERMION_HOME": str(directory / "client-home"),  # nothing of this machine's own stack
            "COLUMNS": "200",
        }

    def fermion(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _fermion(*args, env=self.cli_env, timeout=timeout)

    def down(self) -> subprocess.CompletedProcess[str]:
        args = ("deploy", "compose", "down", "--dir", str(self.dir), "--project", self.project, "--volumes")
        return _fermion(*args, env={**os.environ}, timeout=300)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    require_docker()
    directory = tmp_path_factory.mktemp("compose")
    project = f"fermion-test-{uuid.uuid4().hex[:8]}"
    args = ["deploy", "compose", "up", "--dir", str(directory), "--project", project, "--local-base"]
    args += ["--ingest-port", str(free_port()), "--inference-port", str(free_port()), "-o", "json"]
    started = time.monotonic()
    up = _fermion(*args, env={**os.environ}, timeout=1800)  # builds what this machine lacks
    if up.returncode:
        subprocess.run(["docker", "compose", "-p", project, "down", "-v"], capture_output=True)
        pytest.fail(f"compose up failed:\n{up.stderr[-4000:]}")
    d = Deployed(directory, project, json.loads(up.stdout), started)
    assert "admin key (shown once" in up.stderr  # the first up shows the key once, never in the JSON
    try:
        yield d
    finally:
        d.down()


def _digits(tmp_path: Path) -> np.ndarray:
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    order = np.random.default_rng(1).permutation(len(x))
    held, train = order[:300], order[300:]
    np.savez(tmp_path / "digits.npz", x=x[train], y=y[train])
    np.save(tmp_path / "held.npy", x[held])
    return y[held]


def _train(d: Deployed, model: str, epochs: int) -> str:
    out = d.fermion(
        "train", model, "--dataset", "digits", "--architecture", "mlp", "--epochs", str(epochs), "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["job_id"]


def _job(d: Deployed, job_id: str) -> dict:
    out = d.fermion("jobs", "show", job_id, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait_job(d: Deployed, job_id: str, until: object, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _job(d, job_id)
        if until(job):  # type: ignore[operator]
            return job
        time.sleep(1.0)
    raise AssertionError(f"job {job_id} never reached the state asked for: {job}")


def test_compose_up_trains_and_serves_a_signed_version(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    y_held = _digits(tmp_path)
    up = d.fermion("upload", str(tmp_path / "digits.npz"), "--name", "digits", "-o", "json")
    assert up.returncode == 0, up.stderr
    job_id = _train(d, "digits", 20)
    job = _wait_job(d, job_id, lambda j: j["state"] in ("completed", "failed", "cancelled"), 600)
    assert job["state"] == "completed", job
    predicted = d.fermion("predict", "digits:1", "--input", str(tmp_path / "held.npy"), "-o", "json")
    assert predicted.returncode == 0, predicted.stderr  # inference serves only signed versions
    labels = [str(row["prediction"]) for row in json.loads(predicted.stdout)]  # the classes' names, per row
    accuracy = float(np.mean([p == str(y) for p, y in zip(labels, y_held, strict=True)]))
    since_up = time.monotonic() - d.started
    print(f"compose: up (built images included) {d.up_s:.0f} s; first served prediction {since_up:.0f} s after `up`")
    assert accuracy >= 0.9, accuracy
    shown = json.loads(d.fermion("models", "show", "digits:1", "-o", "json").stdout)
    assert shown["signature"], shown  # signed by the trainer container's key


def test_a_trainer_killed_mid_job_still_gives_one_version(deployed: Deployed) -> None:
    d = deployed
    job_id = _train(d, "digits-killed", 150)
    saved = CheckpointPolicy().every_epochs  # its first checkpoint is saved before that epoch is reported
    _wait_job(d, job_id, lambda j: (j.get("epoch") or 0) >= saved, 300)
    (trainer,) = _docker_ids("container", d.project, "trainer")
    subprocess.run(["docker", "kill", trainer], check=True, capture_output=True)
    # The restart policy brings the container back; JetStream redelivers the job after its ack wait.
    subprocess.run(["docker", "start", trainer], capture_output=True)
    job = _wait_job(d, job_id, lambda j: j["state"] in ("completed", "failed", "cancelled"), 900)
    assert job["state"] == "completed", job
    assert job["resumed_at"], job  # killed mid-job: another delivery resumed it from its checkpoint
    versions = json.loads(d.fermion("models", "versions", "digits-killed", "-o", "json").stdout)["versions"]
    assert [v["version"] for v in versions] == [1], versions


def test_down_leaves_no_container_network_or_volume(deployed: Deployed) -> None:
    d = deployed
    assert _docker_ids("container", d.project), "the deployment is not running"
    down = d.down()
    assert down.returncode == 0, down.stderr
    for kind in ("container", "network", "volume"):
        assert _docker_ids(kind, d.project) == [], f"{kind}s left behind"


def test_the_readme_walkthrough_is_what_these_tests_run() -> None:
    """Every command of the README's compose block is one these tests run, with the same options."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("**Local containers**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].split() for line in block.splitlines() if line.startswith("fermion ")]
    ran = {
        ("deploy", "compose", "up"): {"--dir"},
        ("upload",): {"--name"},
        ("train",): {"--dataset", "--architecture", "--epochs", "-o"},
        ("jobs", "show"): set(),
        ("predict",): {"--input"},
        ("deploy", "compose", "down"): {"--dir", "--volumes"},
    }
    seen = set()
    for words in commands:
        key = next(k for k in ran if tuple(words[1 : 1 + len(k)]) == k)
        seen.add(key)
        options = {w for w in words if w.startswith("-")}
        assert options <= ran[key], (words, options - ran[key])
    assert seen == set(ran), set(ran) - seen
