"""Where one client's latency goes over HTTP: the server's round trip, and the app's work inside it.

One client on a raw keep-alive socket (no HTTP library on the client side), one OIP v2 JSON row of
the digits CNN, p50 of each server after a warm-up, servers interleaved round by round:
- the bare ASGI app of `common.py` under the uvicorn command line (as in bench/serving.py);
- the same with ONNX Runtime on one intra-op thread (as Fermion runs a model this small);
- Fermion from its entry point, as deployed (authentication, signatures, metrics, sampling on);
- Fermion with authentication, metrics and input sampling off;
- Fermion with its pipeline answered from the first answer, kept (the request is still read): what
  the server, the ASGI core and the client cost, without the app's work.

Fermion's minus the canned line is the app's work in a serving process; the bare app's minus the
same round trip is its own. bench/warm_path.py splits the app's work step by step, in-process.

    .venv/bin/python bench/serving_split.py [--rounds 3] [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BARE_ASGI, bench_key, fermion_argv, free_port, oip_body, register_digits, stop, uvicorn_argv

ONE_THREAD = BARE_ASGI.replace(
    'session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])',
    "options = ort.SessionOptions()\noptions.intra_op_num_threads = 1\n"
    'session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"], sess_options=options)',
)

# Fermion's app, whose pipeline answers every request after the first with that first answer.
CANNED = """
from fermion.functions.inference.app import app as inner

async def app(scope, receive, send):
    if scope["type"] == "http" and not hasattr(inner.pipeline, "kept"):
        real = inner.pipeline.serve

        async def keep(call, wire):
            inner.pipeline.kept = await real(call, wire)
            inner.pipeline.serve = canned
            return inner.pipeline.kept

        async def canned(call, wire):
            while (await call.receive()).get("more_body"):
                pass
            return inner.pipeline.kept

        inner.pipeline.serve = keep
    await inner(scope, receive, send)
"""


def p50_us(port: int, body: bytes, authorization: str, requests: int) -> float:
    """Median microseconds per request of one client on one keep-alive connection (the first 10% warm up)."""
    request = (
        "POST /v2/models/digits/infer HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"authorization: {authorization}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    times = []
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(requests):
            started = time.perf_counter()
            conn.sendall(request)
            head, rest = _response(conn)
            times.append(time.perf_counter() - started)
            if i == 0 and b" 200 " not in head.split(b"\r\n")[0]:
                raise RuntimeError(f"not answered: {head[:200]!r} {rest[:200]!r}")
    return statistics.median(times[requests // 10 :]) * 1e6


def _response(conn: socket.socket) -> tuple[bytes, bytes]:
    """One whole response: by its content-length, else to the end of its chunked body."""
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            continue
        lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        if (lengths and len(rest) >= int(lengths[0])) or (not lengths and rest.endswith(b"0\r\n\r\n")):
            return head, rest


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        authorization = bench_key(home)["Authorization"]
        body = oip_body(sample).encode()
        for name, source in {"bare": BARE_ASGI, "bare1": ONE_THREAD, "canned": CANNED}.items():
            (home / f"{name}.py").write_text(source.replace("MODEL", repr(str(model))))
        base = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        local = {"PYTHONPATH": str(home)}
        off = {"FERMION_AUTH": "off", "FERMION_METRICS": "false", "FERMION_SAMPLE_RATE": "0"}
        servers = {
            "bare ASGI app, uvicorn CLI": (lambda port: uvicorn_argv("bare:app", port), local),
            "bare ASGI app, ORT on one thread": (lambda port: uvicorn_argv("bare1:app", port), local),
            "fermion, as deployed": (fermion_argv, {}),
            "fermion, auth, metrics and sampling off": (fermion_argv, off),
            "fermion, pipeline answered from a kept answer": (lambda port: uvicorn_argv("canned:app", port), local),
        }
        p50s: dict[str, list[float]] = {title: [] for title in servers}
        for _ in range(args.rounds):
            for title, (argv, extra) in servers.items():
                port = free_port()
                proc = subprocess.Popen(argv(port), env={**base, **extra})
                try:
                    wait_listening(port, proc)
                    p50s[title].append(p50_us(port, body, authorization, args.requests))
                finally:
                    stop(proc)
    medians = {title: statistics.median(xs) for title, xs in p50s.items()}
    bare, canned = medians["bare ASGI app, uvicorn CLI"], medians["fermion, pipeline answered from a kept answer"]
    print(f"one client, keep-alive, {args.requests} requests x {args.rounds} interleaved rounds, p50 us (per round):")
    for title, xs in p50s.items():
        print(f"  {title:48s} {medians[title]:7.1f}  {medians[title] / bare:.2f}x bare  {[round(x) for x in xs]}")
    fermion = medians["fermion, as deployed"]
    print(
        f"the app's work over the round trip without it ({canned:.0f} us): fermion {fermion - canned:.0f} us, "
        f"the bare app {bare - canned:.0f} us ({(fermion - canned) / (bare - canned):.2f}x)"
    )


if __name__ == "__main__":
    main()
