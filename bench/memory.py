"""Memory of the inference function under requests at the body limit: peak RSS and what is given back.

The digits CNN is served by the inference function's own entry point (CPU). Eight clients post,
at the same time, an OIP v2 JSON request as large as the body limit allows (integer pixel values,
~40,000 rows in 5 MB). Figures, from /proc/<pid>/status: idle RSS before (after one small request),
peak RSS (VmHWM, the high-water mark of the whole process), idle RSS after, and their ratio.

Run twice: as configured now (rows run in chunks of FERMION_MAX_ROWS_PER_RUN, the CPU arena shrunk
after a chunked run) and with the limits lifted (one ORT run per request, no shrinkage), which is
how the function behaved before they existed.

    .venv/bin/python bench/memory.py [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_key, fermion_argv, free_port, register_digits, serve, stop

GIB = 1 << 30
BODY_LIMIT = 5 * 1024 * 1024


def body_at_limit(sample: np.ndarray, limit: int) -> tuple[bytes, int]:
    """The largest OIP JSON body of integer pixel rows (0-16, as digits are) that fits `limit`."""
    rng = np.random.default_rng(0)
    row = json.dumps(rng.integers(0, 17, 64).tolist(), separators=(",", ":"))[1:-1]
    rows = (limit - 200) // (len(row) + 1)
    while True:
        data = rng.integers(0, 17, (rows, 64))
        text = json.dumps(
            {"inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data.ravel().tolist()}]},
            separators=(",", ":"),
        ).encode()
        if len(text) <= limit:
            return text, rows
        rows = int(rows * 0.98)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def settled_rss(pid: int, seconds: float = 5.0) -> int:
    """RSS in bytes once it has stopped changing for a second (allocators give memory back a moment
    after the last request), or after `seconds`."""
    deadline = time.monotonic() + seconds
    last, steady = status_kib(pid, "VmRSS"), 0
    while time.monotonic() < deadline and steady < 4:
        time.sleep(0.25)
        now = status_kib(pid, "VmRSS")
        steady = steady + 1 if now == last else 0
        last = now
    return last * 1024


def measure(
    model_home: Path, body: bytes, clients: int, extra_env: dict[str, str], auth: dict[str, str]
) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    env = {
        **os.environ,
        "FERMION_HOME": str(model_home),
        "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
        "FERMION_PRELOAD": "digits",
        "FERMION_MAX_BODY_BYTES": str(BODY_LIMIT),
        **extra_env,
    }
    small = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]})
    headers = {"content-type": "application/json", **auth}  # as deployed: every request authenticated
    proc = serve(fermion_argv(port), env, url, small, headers)
    try:
        before = settled_rss(proc.pid)
        statuses: list[int] = []
        seconds: list[float] = []

        def post(_: int) -> None:
            started = time.perf_counter()
            r = httpx.post(url, content=body, headers=headers, timeout=300)
            seconds.append(time.perf_counter() - started)
            statuses.append(r.status_code)

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, range(clients)))
        peak = status_kib(proc.pid, "VmHWM") * 1024
        after = settled_rss(proc.pid)
    finally:
        stop(proc)
    return {
        "before": before,
        "peak": peak,
        "after": after,
        "ok": statuses.count(200),
        "median_s": statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-memory-") as tmp:
        home = Path(tmp)
        _, sample, _ = register_digits(home)
        auth = bench_key(home)
        body, rows = body_at_limit(sample, BODY_LIMIT)
        mb = len(body) / 1e6
        print(f"{args.clients} concurrent requests of {rows} rows each, {mb:.2f} MB JSON (limit {BODY_LIMIT})")
        configs = {
            "bounded (defaults)": {},
            "unbounded (one run per request, no arena shrinkage)": {
                "FERMION_MAX_ROWS_PER_RUN": str(1 << 30),
                "FERMION_MAX_ROWS_PER_REQUEST": str(1 << 30),
                "FERMION_ARENA_SHRINKAGE": "false",
            },
        }
        for label, extra in configs.items():
            m = measure(home, body, args.clients, extra, auth)
            ratio = m["after"] / m["before"]
            print(
                f"{label:52s} idle before {m['before'] / 2**20:7.0f} MiB  peak {m['peak'] / 2**20:7.0f} MiB  "
                f"idle after {m['after'] / 2**20:7.0f} MiB  after/before {ratio:4.2f}x  "
                f"200s {m['ok']}/{args.clients}  median {m['median_s']:.2f}s  "
                f"{'PASS' if m['peak'] < GIB and ratio <= 1.5 and m['ok'] == args.clients else 'FAIL'} "
                "(goal: peak < 1 GiB, after <= 1.5x before)"
            )


if __name__ == "__main__":
    main()
