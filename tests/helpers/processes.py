"""Functions running as their own processes, as in production, each logging to its own file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Self

from tests.helpers.waiting import wait_until


class FunctionProcess:
    """`python -m <args>` with `env`, its output appended to `log`; started and stopped by the test only."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the process (again, after `stop`)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def text(self) -> str:
        """Everything the process has logged so far."""
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, timeout_s: float, what: str) -> None:
        """Return once the log holds `line`; fail the test naming `what` after `timeout_s`."""
        wait_until(lambda: line in self.text(), timeout_s, what)

    def stop(self) -> None:
        """Terminate the process, killing it if it is still there after 15 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Trainer(FunctionProcess):
    """A trainer worker running as its own process, as in production."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["fermion.functions.trainer"], env, log)

    def wait_ready(self, timeout_s: float = 60.0) -> Trainer:
        """Return once the worker consumes (it logs so after binding the trainers' consumer)."""
        self.wait_for("trainers: consuming", timeout_s, "trainer ready")
        return self
