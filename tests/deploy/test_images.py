"""The container images: each resolves for its own platform and Python, carries only what it needs,
and every Dockerfile passes hadolint. No Docker here: the images are proven by their parts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from fermion.infra import wheelhouse

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "infra" / "docker").glob("*.Dockerfile"))
pytestmark = pytest.mark.deploy


def _base_requirements() -> list[Requirement]:
    """What a function needs: the base install (the client) and the `serve` extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["serve"]]]


def _environment(platform: str, machine: str) -> dict[str, str]:
    return {"sys_platform": platform, "platform_system": platform.capitalize(), "platform_machine": machine}


def _needs_wheelhouse(image: wheelhouse.Image) -> None:
    if not (wheelhouse.wheelhouse(image) / ".fermion-complete").exists():
        if image.large:
            pytest.skip(f"{image.name}'s wheels are gigabytes: FERMION_IMAGE_WHEELS=all ./scripts/setup fetches them")
        pytest.fail(f"no wheelhouse for {image.name}: ./scripts/setup downloads it")


@pytest.mark.parametrize("image", wheelhouse.IMAGES, ids=lambda i: i.name)
def test_image_resolves_offline_for_its_platform(image: wheelhouse.Image, tmp_path: Path) -> None:
    _needs_wheelhouse(image)
    resolution = wheelhouse.resolve(image, tmp_path)
    carried = sorted(set(image.forbidden) & set(resolution.versions))
    assert not carried, f"{image.name} carries {carried}"
    # Every base dependency the image installs is at a version pyproject.toml admits.
    env = _environment("linux", image.arch)
    for req in _base_requirements():
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = resolution.versions.get(req.name.lower())
        if version is not None:
            assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} not in {req.specifier}"
    ort = "onnxruntime-gpu" if image.name == "inference-gpu" else "onnxruntime"
    if image.name != "ingest":
        assert ort in resolution.versions, f"{image.name} has no {ort}"
    print(f"{image.name}: {len(resolution.versions)} packages, {resolution.installed_bytes / 2**20:.0f} MiB installed")
    assert resolution.installed_bytes > 0


def _interpreter(version: str) -> str | None:
    """The real executable of Python `version` here (pyenv shims resolved), or None."""
    found = shutil.which(f"python{version}")
    pyenv = sorted((Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    if pyenv:  # a pyenv shim refuses a version that is not selected
        found = str(pyenv[-1])
    if found is None:
        return None
    out = subprocess.run([found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else None


def _install_image_site(image: wheelhouse.Image, site: Path) -> None:
    """The image's packages (and Fermion, as `pip install --no-deps .` puts it) into `site`."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--target", str(site)]
    house = str(wheelhouse.wheelhouse(image))
    reqs = ["-r", str(image.requirements_path), *image.extra]
    done = subprocess.run(
        [*pip, *image.pip_target_args(), "--find-links", house, *reqs], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(
        [*pip, "--no-deps", "--no-build-isolation", str(REPO)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


IMPORTS = {
    "lambda": [
        "fermion.functions.inference.handler",
        "fermion.functions.ingest.handler",
        "fermion.functions.ingest.s3_events",
    ],
    "inference-cpu": ["fermion.functions.inference.app", "onnxruntime"],
    "ingest": ["fermion.functions.ingest.app", "fermion.functions.ingest.s3_events"],
}


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_image_requirements_import_the_function(name: str, tmp_path: Path) -> None:
    """The image's own package set, on the image's Python, with nothing else on sys.path, imports
    its functions' entry points (the Lambda handlers are built at import, as in Lambda's init)."""
    image = wheelhouse.by_name(name)
    _needs_wheelhouse(image)
    python = _interpreter(image.python)
    if python is None:
        pytest.skip(f"no python{image.python} here to import {name}'s packages with")
    site = tmp_path / "site"
    _install_image_site(image, site)
    code = f"import sys; sys.path.insert(0, {str(site)!r}); " + "; ".join(f"import {m}" for m in IMPORTS[name])
    env = {"FERMION_HOME": str(tmp_path / "home"), "FERMION_STORE_URL": (tmp_path / "store").as_uri()}
    # -S: no site-packages at all, so only what the image would install is importable.
    out = subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Failed to load library" not in out.stderr, out.stderr[-3000:]


def test_portable_install_picks_an_onnxruntime_with_wheels_everywhere() -> None:
    """GPU build on Linux x86_64 (where its wheels are), the CPU build on macOS and Linux aarch64; never both."""
    ort = [r for r in _base_requirements() if r.name in ("onnxruntime", "onnxruntime-gpu")]
    for platform, machine, expected in [
        ("linux", "x86_64", "onnxruntime-gpu"),
        ("linux", "aarch64", "onnxruntime"),
        ("darwin", "arm64", "onnxruntime"),
        ("darwin", "x86_64", "onnxruntime"),
        ("win32", "AMD64", "onnxruntime"),
    ]:
        env = _environment(platform, machine)
        chosen = [r.name for r in ort if r.marker is None or Marker(str(r.marker)).evaluate(env)]
        assert chosen == [expected], (platform, machine, chosen)


@pytest.mark.skipif(not os.environ.get("FERMION_DEPLOY_ONLINE"), reason="asks PyPI: set FERMION_DEPLOY_ONLINE=1")
@pytest.mark.parametrize(
    ("platform", "machine", "tags"),
    [
        ("linux", "aarch64", ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]),
        ("darwin", "arm64", ["macosx_14_0_arm64", "macosx_12_0_arm64", "macosx_11_0_arm64"]),
        ("linux", "x86_64", ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]),
    ],
)
def test_base_install_resolves_on_each_platform_online(
    platform: str, machine: str, tags: list[str], tmp_path: Path
) -> None:
    """`pip install 'fermion[serve]'`'s dependencies have wheels for each platform (pip cannot apply
    another platform's markers, so they are evaluated here first)."""
    env = _environment(platform, machine)
    reqs = [str(r).split(";")[0] for r in _base_requirements() if r.marker is None or r.marker.evaluate(env)]
    reqs = [r for r in reqs if not r.startswith("uvicorn")] + ["uvicorn>=0.30"]  # uvloop has no Windows wheel
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    cmd += ["--python-version", "3.11", "--target", str(tmp_path)]
    for tag in tags:
        cmd += ["--platform", tag]
    out = subprocess.run([*cmd, *reqs], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run(
        [str(hadolint), "--config", str(REPO / "infra" / "docker" / "hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_image_has_a_dockerfile_and_requirements() -> None:
    for image in wheelhouse.IMAGES:
        assert (REPO / "infra" / "docker" / image.dockerfile).is_file(), image.dockerfile
        assert image.requirements_path.is_file()
        # The Dockerfile installs the image's lock, which the requirements file is locked into.
        assert f"requirements/{image.name}.lock" in (REPO / "infra" / "docker" / image.dockerfile).read_text()
