"""Faults the tests inject into the real servers they start."""

from __future__ import annotations

import os
import signal
from typing import Self

from fermion.infra import NatsServer


class Frozen:
    """nats-server stopped with SIGSTOP until resumed: connections stay open, nothing is answered."""

    def __init__(self, server: NatsServer) -> None:
        self.pid = server.pid

    def __enter__(self) -> Self:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)
