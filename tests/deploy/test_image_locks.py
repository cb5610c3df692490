"""The images' locks (infra/docker/requirements/*.lock): exact pins with hashes, one ONNX Runtime release.

What a lock says is what an image installs (`pip install --require-hashes --no-deps -r LOCK` in every
Dockerfile); `python -m fermion.infra.images lock` writes them from the requirements files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from fermion.infra import images, wheelhouse

pytestmark = pytest.mark.deploy
_PIN = re.compile(r"^(?P<name>[a-z0-9-]+)==(?P<version>\S+)(?P<hashes>( --hash=sha256:[0-9a-f]{64})+)$")


def _pins(image: wheelhouse.Image) -> dict[str, str]:
    pins = {}
    for line in images.lock_path(image).read_text().splitlines():
        if line and not line.startswith("#"):
            m = _PIN.match(line)
            assert m, f"{image.name}: not an exact pin with sha256 hashes: {line[:80]}"
            pins[m["name"]] = m["version"]
    return pins


def _requirements(path: Path) -> list[Requirement]:
    out: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += _requirements(path.with_name(line[3:].strip()))
        elif line:
            out.append(Requirement(line))
    return out


@pytest.mark.parametrize("image", wheelhouse.IMAGES, ids=lambda i: i.name)
def test_every_image_has_a_lock_that_satisfies_its_requirements(image: wheelhouse.Image) -> None:
    pins = _pins(image)
    for req in _requirements(image.requirements_path):
        name = re.sub(r"[_.]+", "-", req.name.lower())
        assert name in pins, f"{image.name}: {req.name} is required but not locked: run the lock command"
        assert req.specifier.contains(pins[name], prereleases=True), f"{image.name}: {name} {pins[name]} vs {req}"
    dockerfile = (wheelhouse.DOCKER_DIR / image.dockerfile).read_text()
    assert "--require-hashes" in dockerfile and "--no-index" in dockerfile


def test_every_image_runs_the_same_onnx_runtime_release() -> None:
    releases = {}
    for image in wheelhouse.IMAGES:
        pins = _pins(image)
        for name in ("onnxruntime", "onnxruntime-gpu"):
            if name in pins:
                releases[image.name] = pins[name]
    assert set(releases) >= {"lambda", "inference-cpu", "inference-gpu", "trainer-cpu"}
    assert len(set(releases.values())) == 1, releases


def test_the_trainer_image_carries_what_its_roles_run() -> None:
    pins = _pins(wheelhouse.by_name("trainer-cpu"))
    assert pins["torch"].endswith("+cpu")  # never the CUDA build from PyPI
    assert "kubernetes" in pins  # distributed ranks as indexed Jobs


def test_no_dockerfile_copies_the_sources_or_reaches_the_network() -> None:
    """Images install the built wheel, not source folders copied one by one, and download nothing."""
    for dockerfile in wheelhouse.DOCKER_DIR.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        copies = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ") and "--from" not in line]
        assert set(copies) <= {"requirements.lock", "wheels", "fermion"}, (dockerfile.name, copies)
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert installs and all("--no-index" in line for line in installs), dockerfile.name
        assert "ARG BASE=" in text and "FROM ${BASE}" in text, dockerfile.name
