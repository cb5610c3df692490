"""The wheel as a user gets it: built from this tree, installed into fresh virtual environments away
from the repository (cwd elsewhere, no PYTHONPATH), and run.

- every package under the `package-dir` roots, and the declared package data, is in the wheel;
- the base install (`pip install fermion`) is the HTTP client and the CLI alone, at most 120 MB with
  its dependencies, and its `fermion --help` and `--version` work;
- with the `local` and `demo` extras, `fermion up` runs every function (the monitor included) and
  `fermion demo` trains and serves against it, and no function is in a restart loop at the end.

Installs go through pip's own cache (~/.cache/pip); torch is installed first, pinned, as
./scripts/setup does, so nothing pulls the CUDA build.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ROOTS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGE_DATA: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
BASE_LIMIT_BYTES = 120 * 10**6  # the base install with its dependencies (issue 23)
TORCH = os.environ.get("FERMION_TORCH", "torch==2.13.0")  # the CPU build, as ./scripts/setup pins it
# What `fermion up` starts, by a piece of each command line (infra/stack.py).
FUNCTIONS = {
    "inference": "fermion.functions.inference",
    "ingest": "fermion.functions.ingest.app:app",
    "trainer": "fermion.functions.trainer",
    "monitor": "fermion.functions.monitor",
    "nats-server": "nats-server",
}
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc"),
]


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything that would find the repository or another environment."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FERMION_")}
    return env | {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "COLUMNS": "100"} | extra


def _run(argv: list[str], cwd: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what the images' builder stage copies (no stale build/ here)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in sorted(set(ROOTS.values())):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = work / "dist"
    done = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)], work, 300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (built,) = out.glob("fermion-*.whl")
    return built


def _venv(path: Path) -> Path:
    """A fresh virtual environment with nothing in it (pip drives it from outside: `pip --python`)."""
    done = _run([sys.executable, "-m", "venv", "--without-pip", str(path)], path.parent, 120)
    assert done.returncode == 0, done.stderr
    return path / "bin" / "python"


def _install(python: Path, *reqs: str, compile_: bool = True, timeout: float = 600) -> None:
    argv = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *reqs]
    argv += [] if compile_ else ["--no-compile"]  # torch's bytecode alone is a minute of two cores
    done = _run(argv, python.parents[2], timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def _source_folder(package: str) -> Path:
    """Where `package` lives in this tree, from the longest `package-dir` root that holds it."""
    root = max((r for r in ROOTS if package == r or package.startswith(r + ".")), key=len)
    return REPO / ROOTS[root] / package.removeprefix(root).lstrip(".").replace(".", "/")


def _in_wheel(path: Path) -> str:
    """`path` (a file in this tree) as the wheel names it."""
    for root, folder in sorted(ROOTS.items(), key=lambda kv: -len(kv[1])):
        with contextlib.suppress(ValueError):
            return f"{root.replace('.', '/')}/{path.relative_to(REPO / folder).as_posix()}"
    raise AssertionError(f"{path} is under no package-dir root")


def test_the_wheel_holds_every_package_and_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected: set[str] = set()
    for folder in sorted(set(ROOTS.values())):
        for init in (REPO / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                expected |= {_in_wheel(module) for module in init.parent.glob("*.py")}
    for package, patterns in PACKAGE_DATA.items():
        for pattern in patterns:
            found = [p for p in _source_folder(package).glob(pattern) if p.is_file()]
            assert found, f"package data {package}: {pattern} matches no file"
            expected |= {_in_wheel(p) for p in found}
    missing = sorted(expected - names)
    assert not missing, f"{len(missing)} files missing from {wheel.name}: {missing[:20]}"
    # One namespace: nothing installs a bare `events` or `functions`.
    assert {n.split("/")[0] for n in names} == {"fermion", wheel.name.split("-py3")[0] + ".dist-info"}


def test_the_base_install_is_the_client_alone(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _install(python, str(wheel))
    site = _site_packages(python)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"base install: {size / 1e6:.1f} MB in {site}")
    assert size <= BASE_LIMIT_BYTES, f"the base install is {size / 1e6:.1f} MB"
    servers = [p for p in ("onnxruntime", "nats", "fastapi", "boto3", "torch", "cryptography") if (site / p).exists()]
    assert not servers, f"the base install carries {servers}"
    fermion = str(python.parent / "fermion")
    home = str(tmp_path / "home")
    helped = _run([fermion, "--help"], tmp_path, 60, FERMION_HOME=home)
    assert helped.returncode == 0 and "models" in helped.stdout, helped.stdout + helped.stderr
    version = _run([fermion, "--version"], tmp_path, 60, FERMION_HOME=home)
    assert version.returncode == 0 and version.stdout.startswith("fermion "), version.stdout + version.stderr
    # No key and no local stack: one line that says what to set or install, no traceback.
    out = _run([fermion, "models", "list"], tmp_path, 60, FERMION_HOME=home)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "FERMION_API_KEY" in out.stderr and "pip install 'fermion[local]'" in out.stderr, out.stderr


def _free_ports(n: int) -> list[int]:
    with contextlib.ExitStack() as held:  # all open at once, so no two are the same
        socks = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return out


def _wait_up(up: subprocess.Popen[bytes], urls: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and up.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if all(httpx.get(u, timeout=1.0).status_code == 200 for u in urls):
                return
        time.sleep(0.5)
    raise AssertionError(f"fermion up not healthy (exit {up.poll()})")


def _logs(home: Path, output: Path) -> str:
    parts = [f"--- fermion up\n{output.read_text()[-3000:]}"]
    parts += [f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted((home / "logs").glob("*.log"))]
    return "\n".join(parts)


@pytest.mark.timeout(900)
def test_a_wheel_install_runs_up_and_demo_with_every_function(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    started = time.monotonic()
    _install(python, TORCH, compile_=False)  # first and pinned: the CPU build
    _install(python, f"{wheel}[local,demo]", compile_=False)
    print(f"installed torch and fermion[local,demo] in {time.monotonic() - started:.0f}s")
    fermion = str(python.parent / "fermion")
    home = tmp_path / "home"
    nats, ingest, inference = _free_ports(3)
    stack = {
        "FERMION_HOME": str(home),
        "FERMION_NATS_PORT": str(nats),
        "FERMION_INGEST_PORT": str(ingest),
        "FERMION_INFERENCE_PORT": str(inference),
        "FERMION_TRAINER_METRICS_PORT": "0",
    }
    output = tmp_path / "up.log"
    with output.open("wb") as sink:
        up = subprocess.Popen(
            [fermion, "up"],
            cwd=tmp_path,
            env=_env(**stack),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = [f"http://127.0.0.1:{ingest}/healthz", f"http://127.0.0.1:{inference}/v2/health/live"]
        try:
            _wait_up(up, health, 120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_logs(home, output)}") from None
        demo = _run([fermion, "demo", "--epochs", "2"], tmp_path, 420, **stack)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:] + _logs(home, output)
        assert "served accuracy" in demo.stdout, demo.stdout
        running = _children(up.pid)
        for name, piece in FUNCTIONS.items():
            assert any(piece in cmd for cmd in running.values()), f"no {name} running: {running}\n{_logs(home, output)}"
        assert b"exited with" not in output.read_bytes(), _logs(home, output)  # the supervisor restarted nothing
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, _logs(home, output)
        assert "stopped" in output.read_text()
        left = [cmd for pid, cmd in running.items() if Path(f"/proc/{pid}").exists()]
        assert not left, f"still running after fermion up stopped: {left}"
    finally:
        if up.poll() is None:  # only what this test started: `fermion up`'s own session
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=30)
