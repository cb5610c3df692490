"""Every command block of README.md, run (issue 27): what it tells a newcomer to type works.

The fenced `sh`/`bash` blocks are read from README.md itself, one logical command per line
(backslash continuations joined), and each is run with bash, in order, in a folder holding the
files the commands name, against `fermion up`'s stack (the `stack` fixture). Placeholders (JOB_ID,
KEY_ID, ...) become ids the earlier commands printed, and `[optional]` parts are left out. A
command that cannot run here is listed in SKIPPED with the reason, and a README command that is
neither run nor listed fails the test, as does a SKIPPED entry that no longer matches anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_iris

from fermion.client import Client
from fermion.infra import Stack, StackSettings
from tests.helpers import REPO, free_port, linear_onnx
from tests.helpers.pictures import digit_pictures, png, write_class_folders, zip_folder
from tests.helpers.stack import cli_env

pytestmark = pytest.mark.e2e
BLOCK = re.compile(r"^```(sh|bash)\n(.*?)^```", re.S | re.M)
# Each pattern (searched in a README command) with why that command is not run here.
SKIPPED = {
    r"^\./scripts/setup && ": "reinstalls this venv; `fermion demo` is run by tests/e2e/test_flow.py",
    r"^\./scripts/test": "the test suite itself",
    r"/fermion up( &)?( +#.*)?$": "runs until Ctrl-C: the `stack` fixture is the Stack `fermion up` runs",
    r"^export FERMION_(URL|API_KEY)=": "a remote deployment's placeholders; test_cli.py drives one through a gateway",
    r"--workers 2": "two ranks under torch.distributed: tests/integration/test_elastic.py",
    r"python -m fermion_edge": "the runner on a device: tests/integration/test_edge.py runs it on a bundle",
    r"python -m fermion\.functions\.federated": "long-running coordinator/participants: test_federated.py",
    r"federated (start|rounds)": "needs running participants: tests/integration/test_federation_start.py",
    r"fermion deploy (compose|aws|k8s)": "needs docker, an AWS account or a cluster: tests/deploy/ runs these",
    r"^(export (FERMION_INGEST_URL|FERMION_API_KEY=\"\$\(cat|ECR=)|KNATIVE=)": "part of a deploy walk-through",
    r"^(docker|kubectl|helm) ": "needs docker or a Kubernetes cluster: tests/deploy/ checks the manifests",
    r"python -m fermion\.infra\.images context": "builds image contexts from the wheelhouse: tests/deploy/",
    r"^fermion (upload digits\.npz|train digits .*-o json|jobs show JOB_ID|predict digits:1)": (
        "the compose walk-through's commands against its containers: tests/deploy/test_compose_stack.py"
    ),
}


def readme_commands() -> list[str]:
    """Every logical command in README.md's sh/bash blocks, in order (comment-only lines left out)."""
    commands = []
    for block in BLOCK.finditer((REPO / "README.md").read_text()):
        text = block.group(2).replace("\\\n", " ")
        commands += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return commands


def _skipped(command: str) -> str | None:
    return next((why for pattern, why in SKIPPED.items() if re.search(pattern, command)), None)


def _files(cwd: Path) -> None:
    """What the commands name: rows to predict, digits as pictures, an ONNX file; `.venv` and `examples/`."""
    (cwd / ".venv").symlink_to(REPO / ".venv")
    (cwd / "examples").symlink_to(REPO / "examples")
    iris = load_iris()
    np.savetxt(cwd / "rows.csv", iris.data[1::25], delimiter=",", fmt="%g")
    pictures, labels = digit_pictures()
    write_class_folders(cwd / "digits", pictures[:150], labels[:150])
    zip_folder(cwd / "digits", cwd / "digits.zip")
    (cwd / "seven.png").write_bytes(png(pictures[7]))
    (cwd / "more").mkdir()
    for n in (0, 1, 2):
        (cwd / "more" / f"{n}.png").write_bytes(png(pictures[150 + n]))
    (cwd / "model.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))


def _prepare(stack: Stack, cwd: Path, ids: dict[str, str]) -> dict[str, Callable[[], None]]:
    """Steps the README leaves to the reader, each run before the first command its pattern finds."""

    def second_iris() -> None:  # `models show iris:2` and `promote iris 2` take a second version
        with Client.from_settings(stack.settings) as client:
            client.wait(client.train("iris", "iris", epochs=5), timeout_s=120)

    def failed_job() -> None:  # `jobs dlq retry JOB_ID` takes a dead-lettered job
        with Client.from_settings(stack.settings) as client:
            ids["JOB_ID"] = client.train("iris", "iris", architecture="resnet9000", epochs=1)
            for _ in client.follow(ids["JOB_ID"], timeout_s=60):
                pass

    def wine() -> None:  # the drift block watches a served model named wine
        with Client.from_settings(stack.settings) as client:
            client.push("wine", cwd / "model.onnx", labels=["a", "b", "c"])

    def scored() -> None:  # `jobs fetch SCORING_JOB_ID` takes the scoring job `fermion score` queued, finished
        with Client.from_settings(stack.settings) as client:
            for _ in client.follow(ids["SCORING_JOB_ID"], timeout_s=120):
                pass

    return {
        r"models show iris:2": second_iris,
        r"jobs show JOB_ID_PREFIX": failed_job,
        r"models drift wine": wine,
        r"jobs fetch SCORING_JOB_ID": scored,
    }


def _fill(command: str, ids: dict[str, str]) -> str:
    """Placeholders as ids printed before; `[--option value]` (optional) left out."""
    command = re.sub(r" \[--[^\]]*\]", "", command)
    command = command.replace("JOB_ID_PREFIX", ids.get("JOB_ID", "JOB_ID")[:8])
    for name, value in ids.items():
        command = command.replace(name, value)
    return command


@pytest.mark.timeout(900)
def test_every_readme_command_runs_or_says_why_not(stack: Stack, tmp_path: Path) -> None:
    commands = readme_commands()
    unused = [p for p in SKIPPED if not any(re.search(p, c) for c in commands)]
    assert not unused, f"SKIPPED entries that match no README command any more: {unused}"
    _files(tmp_path)
    ids: dict[str, str] = {}
    prepare = _prepare(stack, tmp_path, ids)
    env = cli_env(stack.settings, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    ran = []
    for command in commands:
        if _skipped(command):
            continue
        for pattern in [p for p in prepare if re.search(p, command)]:
            prepare.pop(pattern)()
        filled = _fill(command, ids)
        out = subprocess.run(["bash", "-c", filled], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"README command failed: {filled}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        if m := re.search(r"^key (\S+) for tenant", out.stdout, re.M):
            ids["KEY_ID"] = m.group(1)
        if m := re.search(r"^scoring job (\S+):", out.stdout, re.M):
            ids["SCORING_JOB_ID"] = m.group(1)
        ran.append(command)
    assert len(ran) >= 30, ran  # the first hour, the registry, keys, jobs, pipelines, sweeps, edge, drift


@pytest.mark.timeout(180)
def test_fermion_up_prints_its_console_url_when_ready(tmp_path: Path) -> None:
    """The README's `fermion up &`, as a process: once up it names the console, which answers there."""
    settings = StackSettings(
        home=tmp_path / "home", nats_port=free_port(), ingest_port=free_port(), inference_port=free_port()
    )
    env = cli_env(settings, FERMION_TRAINER_METRICS_PORT="0")
    command = [sys.executable, "-m", "fermion", "up"]
    said: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as up:
        try:
            assert up.stdout is not None
            for line in up.stdout:  # bounded: the process ends (and the pipe closes) if the stack fails to start
                said.append(line)
                if line.startswith("console: ") or len(said) > 200:
                    break
            url = f"{settings.ingest_url}/console"
            assert said and said[-1].strip() == f"console: {url}", said
            assert httpx.get(url, timeout=10).status_code == 200
        finally:
            up.send_signal(signal.SIGTERM)
            up.communicate(timeout=60)
    assert up.returncode == 0
