"""uvicorn's real httptools protocol with `OneWriteProtocol`: a response leaves in one write, a
streamed one is not held past the event loop's turn, a closing connection sends before it closes,
and over a real socket keep-alive requests, HEAD and streaming answer as uvicorn's own protocol does."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from fermion.functions.inference.coalescing import HeldWrite, OneWriteProtocol
from tests.helpers import free_port

App = Callable[[Any, Any, Any], Awaitable[None]]


class Recorder(asyncio.Transport):
    """A transport that keeps each write call, as the bytes it would send in one system call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []
        self.closes: list[int] = []  # the writes made by each close
        self.late: list[bytes] = []  # writes after the close
        self.closed = False

    def write(self, data: Any) -> None:
        (self.late if self.closed else self.calls).append(bytes(data))  # uvloop raises on a closed one

    def writelines(self, list_of_data: Any) -> None:
        (self.late if self.closed else self.calls).append(b"".join(list_of_data))

    def close(self) -> None:
        self.closes.append(len(self.calls))
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _connected(app: App) -> tuple[OneWriteProtocol, Recorder]:
    config = uvicorn.Config(app, http=OneWriteProtocol, ws="none", lifespan="off", log_config=None)
    config.load()
    protocol = OneWriteProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recorder()
    protocol.connection_made(transport)
    return protocol, transport


async def answer(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, answers it back with a content length: uvicorn writes head and body apart."""
    body = (await receive())["body"]
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_a_response_leaves_in_one_write() -> None:
    protocol, transport = _connected(answer)
    for _ in range(2):  # keep-alive: each response its own single write
        protocol.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
        await _turns()
    assert len(transport.calls) == 2
    for call in transport.calls:
        assert call.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in call
        assert call.endswith(b"\r\n\r\nhello")
    assert not transport.closed


async def test_a_streamed_response_is_not_held_past_the_loop_turn() -> None:
    go_on = asyncio.Event()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await go_on.wait()  # the head must be out while the app waits
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": b"last"})

    protocol, transport = _connected(stream)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await _turns()
    assert len(transport.calls) == 1 and transport.calls[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.calls[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    go_on.set()
    await _turns()
    sent = b"".join(transport.calls)
    assert sent.endswith(b"\r\n\r\n5\r\nfirst\r\n4\r\nlast\r\n0\r\n\r\n")
    assert len(transport.calls) == 2  # "first" was held until "last" came, in the same turn


async def test_a_closing_connection_sends_its_response_before_it_closes() -> None:
    protocol, transport = _connected(answer)
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi")
    await _turns()
    assert transport.calls == [transport.calls[0]] and transport.calls[0].endswith(b"\r\n\r\nhi")
    assert transport.closes == [1]  # closed once, after the one write


async def test_a_response_is_sent_when_it_completes() -> None:
    seen: list[int] = []  # the writes made by the time the app's last send returns

    async def head(scope: Any, receive: Any, send: Any) -> None:
        await answer(scope, receive, send)  # HEAD: uvicorn writes the head only, at the body's send
        seen.append(len(transport.calls))

    protocol, transport = _connected(head)
    protocol.data_received(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
    await _turns()
    assert seen == [1]  # sent when the response completed, not a loop turn later
    assert len(transport.calls) == 1 and transport.calls[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.calls[0].endswith(b"content-length: 0\r\n\r\n")


async def test_a_write_held_when_the_connection_is_lost_is_dropped() -> None:
    go_on = asyncio.Event()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await go_on.wait()

    protocol, transport = _connected(stream)
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.sleep(0)  # the app has sent its head, held until the end of this loop turn
    held = protocol.transport
    assert isinstance(held, HeldWrite) and held.held is not None
    transport.closed = True  # the client reset the connection: the loop closed the transport
    protocol.connection_lost(ConnectionResetError())
    assert held.held is None
    go_on.set()
    await _turns()
    assert transport.calls == [] and transport.late == []  # nothing sent into the closed transport


async def test_held_write_holds_at_most_one_write() -> None:
    transport = Recorder()
    held = HeldWrite(transport, asyncio.get_running_loop())
    held.write(b"a")
    assert transport.calls == [] and held.held == b"a"
    held.write(b"b")
    held.write(b"c")
    assert transport.calls == [b"ab"] and held.held == b"c"
    await _turns(1)
    assert transport.calls == [b"ab", b"c"] and held.held is None
    held.write(b"d")
    held.close()
    assert transport.calls == [b"ab", b"c", b"d"] and transport.closed


async def test_held_write_keeps_order_through_its_other_sending_methods() -> None:
    transport = Recorder()
    held = HeldWrite(transport, asyncio.get_running_loop())
    held.write(b"a")
    held.writelines([b"b", b"c"])  # after the held write, in one call
    assert transport.calls == [b"abc"]
    held.write(b"d")
    transport.abort = lambda: setattr(transport, "closed", True)  # type: ignore[method-assign]
    held.abort()  # drops the held write at once, as a reset connection does
    assert held.held is None and transport.closed
    await _turns(1)
    assert transport.calls == [b"abc"] and transport.late == []


@pytest.mark.parametrize("http", ["httptools", OneWriteProtocol])
async def test_over_a_real_socket_it_answers_as_uvicorn_does(http: Any) -> None:
    port = free_port()

    async def routes(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one", b"two", b""):
                await send({"type": "http.response.body", "body": part, "more_body": bool(part)})
                await asyncio.sleep(0.01)
        else:
            await answer(scope, receive, send)

    config = uvicorn.Config(routes, host="127.0.0.1", port=port, http=http, ws="none", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")
        assert await reader.readexactly(3) == b"abc"
        writer.write(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert b"content-length: 0" in await reader.readuntil(b"\r\n\r\n")
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        assert b"transfer-encoding: chunked" in await reader.readuntil(b"\r\n\r\n")
        assert await reader.readuntil(b"0\r\n\r\n") == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
        writer.close()
    finally:
        server.should_exit = True
        await serving


def test_the_entry_points_uvicorn_writes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from fermion.functions.inference.servers import run_uvicorn

    used: list[type] = []

    def run(server: uvicorn.Server, sockets: Any = None) -> None:
        used.append(server.config.http_protocol_class)

    monkeypatch.setattr(uvicorn.Server, "run", run)

    class Stub:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

        async def aclose(self) -> None: ...

    with socket.socket() as sock:
        run_uvicorn(Stub(), sock, "warning", ready=lambda: None)
    assert used == [OneWriteProtocol]
