"""Warm latency and throughput of the inference function over loopback, measured by wrk (a separate
process), at 1, 8 and 32 concurrent connections, beside a minimal hand-written FastAPI server over the
same ONNX file, in one run.

    apt-get install wrk   # once
    .venv/bin/python bench/serving.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start import free_port, register_digits

HAND_WRITTEN = textwrap.dedent("""
    import numpy as np, onnxruntime as ort
    from fastapi import FastAPI, Request
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    app = FastAPI()

    @app.post("/v2/models/digits/infer")
    async def infer(request: Request):
        body = await request.json()
        t = body["inputs"][0]
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        (out,) = session.run(None, {"input": x})
        return {"model_name": "digits", "outputs": [{"name": "logits", "shape": list(out.shape),
                "datatype": "FP32", "data": out.ravel().tolist()}]}
""")


def wrk(url: str, body: str, connections: int, seconds: int, *, raw_script: bool = False) -> dict[str, float]:
    """Run wrk against `url` posting `body` (with `raw_script`, `body` is the whole Lua script)."""
    lua = (
        body
        if raw_script
        else (f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not errors, out
    return {"p50": ms("50"), "p99": ms("99"), "rps": rps}


def serve(
    argv: list[str], env: dict[str, str], url: str, body: str | bytes, headers: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server and return once `body` posted to `url` is answered 200."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = headers or {"content-type": "application/json"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=body, headers=headers).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{argv} did not serve {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        body = json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": sample.ravel().tolist()}]}
        )
        (home / "hand.py").write_text(HAND_WRITTEN)
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        servers = {
            "fermion": ["-m", "uvicorn", "fermion.functions.inference.app:app"],
            "hand-written FastAPI": ["-m", "uvicorn", "--app-dir", str(home), "hand:app"],
        }
        results: dict[str, dict[int, dict[str, float]]] = {}
        for name, argv in servers.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            hand_env = {**env, "PYTHONPATH": str(home)}
            full = [
                sys.executable,
                *argv,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            if name != "fermion":
                (home / "hand.py").write_text(HAND_WRITTEN.replace("MODEL", repr(str(model))))
            proc = serve(full, hand_env if name != "fermion" else env, url, body)
            try:
                results[name] = {c: wrk(url, body, c, args.seconds) for c in (1, 8, 32)}
            finally:
                proc.terminate()
                proc.wait(10)
    print(f"digits CNN, one OIP v2 JSON row per request, wrk {args.seconds}s per point")
    print(f"{'server':22} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, by_conns in results.items():
        for c, r in by_conns.items():
            print(f"{name:22} {c:5d} {r['p50']:8.3f} {r['p99']:8.3f} {r['rps']:8.0f}")


if __name__ == "__main__":
    main()
