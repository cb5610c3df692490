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
    HAND_WRITTEN,
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
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        body = oip_body(sample)
        (home / "hand.py").write_text(HAND_WRITTEN.replace("MODEL", repr(str(model))))
        compile_bytecode(home / "hand.py")
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        servers = {
            "fermion, batching on": lambda port: (fermion_argv(port), env),
            "fermion, batching off": lambda port: (fermion_argv(port), {**env, "FERMION_BATCHING": "false"}),
            "hand-written FastAPI": lambda port: (uvicorn_argv("hand:app", port), {**env, "PYTHONPATH": str(home)}),
            "KServe 0.21": lambda port: (kserve_argv("digits", model, port), env),
        }
        results: dict[str, dict[int, dict[str, float]]] = {}
        for name, make in servers.items():
            port = free_port()
            argv, server_env = make(port)
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            proc = serve(argv, server_env, url, body)
            try:
                wrk(url, body, 8, 1)  # warm-up: allocators, caches, the batcher's first batches
                results[name] = {c: wrk(url, body, c, args.seconds) for c in CONNECTIONS}
            finally:
                stop(proc)
    print(f"digits CNN, one OIP v2 JSON row per request, wrk {args.seconds}s per point")
    print(f"{'server':22} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, by_conns in results.items():
        for c, r in by_conns.items():
            print(f"{name:22} {c:5d} {r['p50']:8.3f} {r['p99']:8.3f} {r['rps']:8.0f}")
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
