"""Keeping the local stack up: a crashed function or nats-server is started again, with back-off.

`fermion up` calls `Supervisor.check()` a few times a second and prints what it says. A process
that exits is restarted after a delay that doubles with each crash in a row (1 s, 2 s, 4 s ... up
to 30 s) and resets once it has stayed up for a minute, so a crash loop neither spins nor stops
the stack. A dead nats-server is restarted on the same port and store directory; the functions'
connections reconnect to it by themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .nats import NatsServer, ServerError
from .stack import Process, Stack, private_umask

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
STABLE_S = 60.0


@dataclass
class _Restarts:
    """One process's crash history."""

    crashes: int = 0
    due: float | None = None
    """When the pending restart happens (monotonic), if one is pending."""
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Restarts what died in a Stack; each call to `check` returns what it noticed and did."""

    def __init__(self, stack: Stack, *, first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S) -> None:
        self.stack = stack
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._state: dict[str, _Restarts] = {}
        self._nats = _Restarts()

    def check(self) -> list[str]:
        """Notice exits, restart what is due; one line per event, for the operator."""
        now = time.monotonic()
        said = self._check_nats(now)
        for p in self.stack.processes:
            said += self._check(p, now)
        return said

    def _delay(self, crashes: int) -> float:
        return float(min(self.first_delay_s * 2 ** (crashes - 1), self.max_delay_s))

    def _check(self, p: Process, now: float) -> list[str]:
        state = self._state.setdefault(p.name, _Restarts())
        if p.proc is None or p.proc.poll() is None:
            if state.crashes and now - state.started > STABLE_S:
                state.crashes = 0  # up long enough: the next crash starts the back-off afresh
            return []
        if state.due is None:
            state.crashes += 1
            delay = self._delay(state.crashes)
            state.due = now + delay
            return [
                f"{p.name} exited with {p.proc.returncode}; restarting in {delay:.0f}s (crash {state.crashes} in a row)"
            ]
        if now < state.due:
            return []
        self.stack.launch(p)
        state.due, state.started = None, now
        return [f"{p.name} restarted (pid {p.proc.pid})"]

    def _check_nats(self, now: float) -> list[str]:
        nats, state = self.stack.nats, self._nats
        if nats is None or not nats.exited:
            return []
        if state.due is None:
            state.crashes += 1
            delay = self._delay(state.crashes)
            state.due = now + delay
            return [f"nats-server died; restarting it in {delay:.0f}s (the functions reconnect by themselves)"]
        if now < state.due:
            return []
        state.due = None
        nats.stop()  # reap the dead one and close its output pipe
        restarted = NatsServer(
            nats.store_dir, host=nats.host, port=nats.port, log_file=nats.log_file, auth=nats.auth, config=nats.config
        )
        try:
            with private_umask():  # its log and JetStream files stay the user's alone
                self.stack.nats = restarted.start()
        except ServerError as exc:
            return [f"nats-server did not start again: {exc}"]
        return [f"nats-server restarted on {restarted.url}"]
