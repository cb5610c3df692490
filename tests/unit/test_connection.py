"""Opening a NATS connection that fails leaves nothing open behind it."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import pytest

from fermion.events.connection import open_connection
from fermion.events.errors import BusUnavailable


async def _silent_server() -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    """A TCP server that accepts and never speaks: a NATS handshake with it can only time out."""
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: writers.append(w), "127.0.0.1", 0)
    return server, writers


def test_a_first_connection_cut_short_closes_its_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    leaked: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", leaked.append)

    async def scenario() -> None:
        server, writers = await _silent_server()
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(BusUnavailable, match="cannot reach NATS"):
                await open_connection(f"nats://127.0.0.1:{port}", name="t", timeout_s=0.5)
        finally:
            for w in writers:
                w.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
    gc.collect()  # what nats-py left open would be finalized here, with a ResourceWarning
    assert [str(u.exc_value) for u in leaked] == []
