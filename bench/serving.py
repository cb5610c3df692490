"""Warm latency and throughput over loopback, measured by wrk (a separate process) at 1, 8 and 32
concurrent connections: Fermion with batching on and off, beside the hand-written FastAPI server
and KServe's model server (`common.py`) over the same ONNX file, in one run.

    apt-get install wrk   # once
    .venv/bin/python bench/serving.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BARE_ASGI,
    HAND_WRITTEN,
    bench_key,
    compile_bytecode,
    fermion_argv,
    free_port,
    kserve_argv,
    oip_body,
    register_digits,
    serve,
    stop,
    uvicorn_argv,
    wrk,
)

CONNECTIONS = (1, 8, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--without-kserve", action="store_true", help="skip KServe (its venv installs on first use)")
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
        servers = {
            "fermion, batching on": lambda port: (fermion_argv(port), env),
            "fermion, batching off": lambda port: (fermion_argv(port), {**env, "FERMION_BATCHING": "false"}),
            # The cost of identity on the warm path: the same server with authentication off.
            "fermion, auth off": lambda port: (fermion_argv(port), {**env, "FERMION_AUTH": "off"}),
            # The cost of metrics on the warm path (bench/metrics_cost.py measures it alone, in rounds).
            "fermion, metrics off": lambda port: (fermion_argv(port), {**env, "FERMION_METRICS": "false"}),
            "hand-written FastAPI": lambda port: (uvicorn_argv("hand:app", port), {**env, "PYTHONPATH": str(home)}),
            "bare ASGI": lambda port: (uvicorn_argv("bare:app", port), {**env, "PYTHONPATH": str(home)}),
            "KServe 0.21": lambda port: (kserve_argv("digits", model, port), env),
        }
        if args.without_kserve:
            del servers["KServe 0.21"]
        results: dict[str, dict[int, dict[str, float]]] = {}
        for name, make in servers.items():
            port = free_port()
            argv, server_env = make(port)
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            headers = auth if name.startswith("fermion") else {}
            proc = serve(argv, server_env, url, body, {"content-type": "application/json", **headers})
            try:
                wrk(url, body, 8, 1, headers=headers)  # warm-up: allocators, caches, the batcher's first batches
                results[name] = {c: wrk(url, body, c, args.seconds, headers=headers) for c in CONNECTIONS}
            finally:
                stop(proc)
    print(f"digits CNN, one OIP v2 JSON row per request, wrk {args.seconds}s per point")
    print(f"{'server':22} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, by_conns in results.items():
        for c, r in by_conns.items():
            print(f"{name:22} {c:5d} {r['p50']:8.3f} {r['p99']:8.3f} {r['rps']:8.0f}")
    on, off = results["fermion, batching on"], results["fermion, auth off"]
    print(
        f"authentication's cost at 1 conn: p50 {on[1]['p50']:.3f} vs {off[1]['p50']:.3f} ms "
        f"({on[1]['p50'] / off[1]['p50']:.2f}x), req/s at 32 conns {on[32]['rps'] / off[32]['rps']:.2f}x"
    )
    moff = results["fermion, metrics off"]
    ratio = on[1]["p50"] / moff[1]["p50"]
    print(f"metrics' cost at 1 conn: p50 {on[1]['p50']:.3f} vs {moff[1]['p50']:.3f} ms ({ratio:.2f}x)")
    bare = results["bare ASGI"]
    for name in ("fermion, batching on", "fermion, auth off"):
        f = results[name]
        print(
            f"{name} vs bare ASGI: p50 @1 {f[1]['p50'] / bare[1]['p50']:.2f}x, "
            f"req/s @32 {f[32]['rps'] / bare[32]['rps']:.2f}x, p99 @32 {f[32]['p99'] / bare[32]['p99']:.2f}x"
        )
    if "KServe 0.21" not in results:
        return
    kserve = results["KServe 0.21"]
    for name in ("fermion, batching on", "fermion, batching off", "hand-written FastAPI"):
        ratios = ", ".join(
            f"{c} conns {results[name][c]['rps'] / kserve[c]['rps']:.2f}x req/s, "
            f"p99 {results[name][c]['p99'] / kserve[c]['p99']:.2f}x"
            for c in CONNECTIONS
        )
        print(f"{name} vs KServe: {ratios}")


if __name__ == "__main__":
    main()
