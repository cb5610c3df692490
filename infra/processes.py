"""Stopping the child processes the local stack started: politely, then for certain."""

from __future__ import annotations

import contextlib
import subprocess


def reap(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait up to `grace_s` for a process told to stop, then SIGKILL it (some ignore SIGTERM)."""
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    reap(proc, grace_s)
