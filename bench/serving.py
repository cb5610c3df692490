"""Warm latency and throughput over loopback, servers interleaved round by round, measured by wrk.

Each round starts every server in turn (A, B, C, ... then again), measures it at 1, 8 and 32
concurrent connections and stops it, so drift in the machine's load hits every server alike; the
report gives medians over the rounds with their spread (min..max), and the CPU time the server
(its workers and threads included) spent per answer. Servers, all over one ONNX file:
Fermion's inference function (batching on and off, auth off, metrics off; on uvicorn and on granian,
one worker and two), the bare ASGI app (the practical limit of conventional Python serving) on
uvicorn, on uvicorn with Fermion's one-write protocol and on granian, the hand-written FastAPI
server and KServe. The goal lines at the end (issue 28) compare Fermion as deployed, on uvicorn and
on granian, with the bare ASGI app on uvicorn.

    apt-get install wrk   # once
    .venv/bin/python bench/serving.py [--rounds 3] [--seconds 5] [--without-kserve]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BARE_ASGI,
    HAND_WRITTEN,
    bench_key,
    compile_bytecode,
    cpu_seconds,
    fermion_argv,
    free_port,
    granian_argv,
    kserve_argv,
    oip_body,
    register_digits,
    serve,
    stop,
    uvicorn_argv,
    wrk,
)

CONNECTIONS = (1, 8, 32)
Point = dict[str, float]
BARE = "bare ASGI, uvicorn"
FERMION = "fermion"
FERMION_GRANIAN = "fermion, granian"
# (figure, connections, measure, goal ratio vs BARE, True when lower is better)
GOALS = (
    ("p50 at 1 client", 1, "p50", 1.0, True),
    ("req/s at 32 clients", 32, "rps", 1.2, False),
    ("p99 at 32 clients", 32, "p99", 1.0, True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3 for a median)")
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per point")
    parser.add_argument("--without-kserve", action="store_true", help="skip KServe (its venv installs on first use)")
    parser.add_argument("--only", action="append", default=[], help="only servers whose title contains this")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        body = oip_body(sample)
        auth = bench_key(home)  # fermion runs as deployed: every request authenticated
        (home / "hand.py").write_text(HAND_WRITTEN.replace("MODEL", repr(str(model))))
        (home / "bare.py").write_text(BARE_ASGI.replace("MODEL", repr(str(model))))
        compile_bytecode(home / "hand.py", home / "bare.py")
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        servers = _servers(home, model, env, args.without_kserve)
        if args.only:
            servers = {k: v for k, v in servers.items() if k in (FERMION, BARE) or any(o in k for o in args.only)}
        results: dict[str, dict[int, list[Point]]] = {name: {c: [] for c in CONNECTIONS} for name in servers}
        for r in range(args.rounds):
            for name, make in servers.items():
                print(f"round {r + 1}/{args.rounds}: {name}", file=sys.stderr)
                port = free_port()
                argv, server_env = make(port)
                url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                headers = auth if name.startswith(FERMION) else {}
                proc = serve(argv, server_env, url, body, {"content-type": "application/json", **headers})
                try:
                    wrk(url, body, 8, 1, headers=headers)  # warm-up: allocators, caches, the batcher's first batches
                    for c in CONNECTIONS:
                        before = cpu_seconds(proc.pid)
                        point = wrk(url, body, c, args.seconds, headers=headers)
                        # The server's CPU per answer: what a request costs where cores are billed or shared.
                        point["cpu"] = (cpu_seconds(proc.pid) - before) / max(point["requests"], 1) * 1e6
                        results[name][c].append(point)
                finally:
                    stop(proc)
    _report(results, args.rounds, args.seconds)


def _servers(
    home: Path, model: Path, env: dict[str, str], without_kserve: bool
) -> dict[str, Callable[[int], tuple[list[str], dict[str, str]]]]:
    """Every server measured, by title: (port) -> (argv, environment)."""
    bare_env = {**env, "PYTHONPATH": str(home)}
    servers: dict[str, Callable[[int], tuple[list[str], dict[str, str]]]] = {
        FERMION: lambda port: (fermion_argv(port), env),
        "fermion, batching off": lambda port: (fermion_argv(port), {**env, "FERMION_BATCHING": "false"}),
        # The cost of identity on the warm path: the same server with authentication off.
        "fermion, auth off": lambda port: (fermion_argv(port), {**env, "FERMION_AUTH": "off"}),
        # The cost of metrics on the warm path (bench/metrics_cost.py measures it alone, in rounds).
        "fermion, metrics off": lambda port: (fermion_argv(port), {**env, "FERMION_METRICS": "false"}),
        BARE: lambda port: (uvicorn_argv("bare:app", port), bare_env),
        # The same bare app with Fermion's uvicorn protocol (coalescing.py): each response in one write.
        "bare ASGI, uvicorn, one write": lambda port: (uvicorn_argv("bare:app", port, one_write=True), bare_env),
        "hand-written FastAPI": lambda port: (uvicorn_argv("hand:app", port), bare_env),
    }
    # Several workers on the one port: throughput where the machine has the cores for them.
    servers["fermion, 2 workers"] = lambda port: (fermion_argv(port, "--workers", "2"), env)
    if importlib.util.find_spec("granian") is not None:
        servers[FERMION_GRANIAN] = lambda port: (fermion_argv(port, "--server", "granian"), env)
        servers["fermion, granian, 2 workers"] = lambda port: (
            fermion_argv(port, "--server", "granian", "--workers", "2"),
            env,
        )
        servers["bare ASGI, granian"] = lambda port: (granian_argv("bare:app", port), bare_env)
    if not without_kserve:
        servers["KServe 0.21"] = lambda port: (kserve_argv("digits", model, port), env)
    return servers


def _report(results: dict[str, dict[int, list[Point]]], rounds: int, seconds: int) -> None:
    """Medians over the rounds with their spread, ratios to the bare app, and the goals' pass/fail lines."""
    med = {
        n: {c: {k: statistics.median(p[k] for p in pts) for k in ("p50", "p99", "rps", "cpu")} for c, pts in by.items()}
        for n, by in results.items()
    }
    print(f"digits CNN, one OIP v2 JSON row per request, {rounds} interleaved rounds, wrk {seconds}s per point")
    print(f"medians (min..max over rounds); ratios against {BARE!r} in the same round set")
    print(f"{'server':34} {'conns':>5} {'p50 ms':>20} {'p99 ms':>22} {'req/s':>20} {'server CPU us/req':>18}")
    for name, by_conns in results.items():
        for c, pts in by_conns.items():
            m = med[name][c]
            cells = [
                f"{m[k]:.3f} ({min(p[k] for p in pts):.2f}..{max(p[k] for p in pts):.2f})"
                if k != "rps"
                else f"{m[k]:.0f} ({min(p[k] for p in pts):.0f}..{max(p[k] for p in pts):.0f})"
                for k in ("p50", "p99", "rps")
            ]
            print(f"{name:34} {c:5d} {cells[0]:>20} {cells[1]:>22} {cells[2]:>20} {m['cpu']:18.0f}")
    if BARE not in med:
        return
    bare = med[BARE]
    for name in med:
        if name == BARE:
            continue
        f = med[name]
        print(
            f"{name} vs {BARE}: p50 @1 {f[1]['p50'] / bare[1]['p50']:.2f}x, "
            f"req/s @32 {f[32]['rps'] / bare[32]['rps']:.2f}x, p99 @32 {f[32]['p99'] / bare[32]['p99']:.2f}x"
            + (  # no CPU figure where there is no /proc
                f", server CPU per request @1 {f[1]['cpu'] / bare[1]['cpu']:.2f}x, "
                f"@32 {f[32]['cpu'] / bare[32]['cpu']:.2f}x"
                if bare[1]["cpu"] and bare[32]["cpu"]
                else ""
            )
        )
    for variant in (FERMION, FERMION_GRANIAN):
        if variant not in med:
            continue
        for figure, conns, key, goal, lower in GOALS:
            ratio = med[variant][conns][key] / bare[conns][key]
            ok = ratio <= goal if lower else ratio >= goal
            sign = "<=" if lower else ">="
            print(
                f"GOAL {figure}: {variant} {ratio:.2f}x the bare app on uvicorn (goal {sign} {goal}x): "
                f"{'PASS' if ok else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
