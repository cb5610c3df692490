"""LocalStack in host mode, as a real S3 API on loopback for tests, benchmarks and local pipelines.

LocalStack lives in its own virtual environment (its pins clash with ours), installed by
`python -m fermion.infra.localstack install`, and runs as `python -m localstack.runtime.main`
(never the `localstack` CLI, which wants Docker and an account token). Its default web server
binds 0.0.0.0 whatever host it is given, so it always runs with GATEWAY_SERVER=hypercorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from . import processes
from .nats import ServerError

REQUIREMENTS = Path(__file__).with_name("localstack-requirements.txt")
_VERSION = "4.13.1"


def venv_dir() -> Path:
    """Where LocalStack's own virtual environment lives (FERMION_LOCALSTACK_VENV overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fermion" / f"localstack-{_VERSION}"
    return Path(os.environ.get("FERMION_LOCALSTACK_VENV", default))


def python() -> Path:
    """The interpreter of LocalStack's virtual environment."""
    return venv_dir() / "bin" / "python"


def installed() -> bool:
    """Whether LocalStack's virtual environment is ready."""
    marker = venv_dir() / ".fermion-installed"
    return python().exists() and marker.exists() and marker.read_text() == REQUIREMENTS.read_text()


def install() -> Path:
    """Create LocalStack's virtual environment (idempotent); returns its interpreter."""
    if installed():
        return python()
    venv = venv_dir()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python()), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    (venv / ".fermion-installed").write_text(REQUIREMENTS.read_text())
    return python()


class LocalStack:
    """One LocalStack process serving S3 (SQS, Secrets Manager) on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, *, port: int, log_file: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_file = log_file or data_dir / "localstack.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> LocalStack:
        """Start LocalStack and return once S3 answers."""
        if not installed():
            raise ServerError("LocalStack is not installed: run `python -m fermion.infra.localstack install`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GATEWAY_SERVER": "hypercorn",
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "DNS_ADDRESS": "0",
            "SERVICES": "s3,sqs,secretsmanager",
            "FILESYSTEM_ROOT": str(self.data_dir),
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "LOCALSTACK_TELEMETRY": "0",
        }
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                [str(python()), "-m", "localstack.runtime.main"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"LocalStack exited with {self._proc.returncode}; see {self.log_file}")
            try:
                health = httpx.get(f"{self.endpoint_url}/_localstack/health", timeout=1.0).json()
                if health.get("services", {}).get("s3") in ("available", "running"):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"LocalStack did not answer within {timeout_s:.0f}s; see {self.log_file}")

    def stop(self, grace_s: float = 3.0) -> None:
        """Stop it: SIGTERM, then SIGKILL (it may ignore SIGTERM)."""
        if self._proc is None:
            return
        processes.stop(self._proc, grace_s)
        self._proc = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m fermion.infra.localstack install")
    print(f"LocalStack {_VERSION} ready in {install().parent.parent}")
