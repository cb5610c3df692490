"""Bounded polls that fail the test, naming what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def wait_for_model(client: Any, ref: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """The served model's metadata once `ref` (say `name@production`) resolves; fails the test on timeout."""
    from fermion.client import FermionError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return dict(client.metadata(ref))
        except FermionError:
            time.sleep(0.3)
    pytest.fail(f"{ref} was never served within {timeout_s:.0f}s")
