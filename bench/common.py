"""What the inference benchmarks share: the digits CNN, the reference servers, starting servers, wrk.

The references, each measured in the same run as Fermion:
- a bare script (import onnxruntime, create the session, run once): the floor;
- a plain hand-written FastAPI + uvicorn server that loads the ONNX file from local disk;
- KServe's Python model server with a custom `kserve.Model` around ONNX Runtime, installed in a
  virtual environment of its own (`kserve_python`), so its dependencies never touch Fermion's.
"""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

BENCH = Path(__file__).resolve().parent
KSERVE_VERSION = "0.21.0"
KSERVE_VENV = Path(os.environ.get("FERMION_KSERVE_VENV", Path.home() / ".cache/fermion/kserve-venv"))

HAND_WRITTEN = """
import numpy as np, onnxruntime as ort
from fastapi import FastAPI, Request
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
app = FastAPI()

@app.post("/v2/models/digits/infer")
async def infer(request: Request):
    t = (await request.json())["inputs"][0]
    (out,) = session.run(None, {"input": np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])})
    return {"model_name": "digits", "outputs": [{"name": "logits", "shape": list(out.shape), "datatype": "FP32",
            "data": out.ravel().tolist()}]}
"""

# What Python can do with this model at all: no framework, the body parsed with pydantic_core, one
# session.run, the response bytes built by hand; run under uvicorn with uvloop and httptools.
BARE_ASGI = """
import numpy as np, onnxruntime as ort
from pydantic_core import from_json, to_json
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
HEADERS = [(b"content-type", b"application/json")]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    t = from_json(body)["inputs"][0]
    (out,) = session.run(None, {"input": np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])})
    answer = to_json({"model_name": "digits", "outputs": [{"name": "logits", "shape": list(out.shape),
                      "datatype": "FP32", "data": out.ravel().tolist()}]})
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": answer})
"""


def register_digits(home: Path) -> tuple[Path, np.ndarray, int]:
    """Train the digits CNN, register it in a local registry under `home`; the file, a row, its class."""
    import torch
    from sklearn.datasets import load_digits

    from fermion.compile import check_parity, export_onnx
    from fermion.events import Recipe
    from fermion.model_store import Draft
    from fermion.training.data import Dataset
    from fermion.training.loop import train

    d = load_digits()
    ds = Dataset(d.data.astype(np.float32), d.target.astype(np.int64), [str(i) for i in range(10)])
    trained = train(ds, Recipe(architecture="cnn", epochs=8, learning_rate=2e-3))
    exported = export_onnx(trained.module, torch.from_numpy(trained.x_test[:2]))
    check_parity(trained.module, exported.onnx_bytes, trained.x_test)
    registry = bench_registry(home)
    draft = Draft(signature=digits_signature())
    manifest = registry.register("default", "digits", {"model.onnx": exported.onnx_bytes}, draft)
    sample = trained.x_test[:1]
    with torch.no_grad():
        expected = int(trained.module(torch.from_numpy(sample)).argmax())
    return registry.fetch(manifest), sample, expected


def digits_signature() -> Any:
    """The digits CNN's signature: 64 pixels in, 10 logits out."""
    from fermion.model_store import Signature, TensorSpec

    return Signature(
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
    )


def bench_registry(home: Path) -> Any:
    """A registry under `home` that signs what it registers, as trainers do (the served function verifies)."""
    from fermion.model_store import LocalDirStore, Registry, Signer, generate_key_pair

    private, _ = generate_key_pair(home / "keys")
    return Registry(LocalDirStore(home / "store"), home / "prep-cache", signer=Signer.from_file(private))


def bench_key(home: Path) -> dict[str, str]:
    """The Authorization header of a fresh `infer` key in the registry under `home` (authentication is on)."""
    from fermion.model_store import KeyStore, LocalDirStore

    _, key = KeyStore(LocalDirStore(home / "store")).create("default", ["infer"], name="bench")
    return {"Authorization": f"Bearer {key}"}


def run_ms(session: ort.InferenceSession, x: np.ndarray, n: int) -> float:
    """Median `session.run` time of `x` on the session's (first) input, in ms, after a warm-up."""
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(5):
        session.run(None, feeds)
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        session.run(None, feeds)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000


def oip_body(sample: np.ndarray) -> str:
    """One OIP v2 JSON request for the digits model."""
    row = {"name": "input", "shape": list(sample.shape), "datatype": "FP32", "data": sample.ravel().tolist()}
    return json.dumps({"inputs": [row]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compile_bytecode(*extra: Path) -> None:
    """Write .pyc files as a container image build does (`pip install` of a wheel compiles them).

    An editable checkout under PYTHONDONTWRITEBYTECODE would recompile every module from source on
    every start, which is a property of the checkout, not of the server being measured.
    """
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for package in pyproject["tool"]["setuptools"]["package-dir"]:  # every root, service/ included
        spec = importlib.util.find_spec(package)
        assert spec and spec.submodule_search_locations
        compileall.compile_dir(spec.submodule_search_locations[0], quiet=1)
    for path in extra:
        compileall.compile_file(path, quiet=1)


def fermion_argv(port: int, *options: str) -> list[str]:
    """The inference function's own entry point, as its container runs it (`options`: --server, --workers)."""
    return [sys.executable, "-m", "fermion.functions.inference", "--port", str(port), *options]


def uvicorn_argv(app: str, port: int, one_write: bool = False) -> list[str]:
    """A server started the plain way: the uvicorn command line (`one_write`: with the inference
    function's HTTP protocol, each response's head and body in one write)."""
    protocol = ("--http", "fermion.functions.inference.coalescing:OneWriteProtocol") if one_write else ()
    return [
        sys.executable,
        *("-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), *protocol),
        *("--log-level", "warning", "--no-access-log", app),
    ]


def granian_argv(app: str, port: int) -> list[str]:
    """The same app under granian (a Rust HTTP server with an ASGI interface): one worker, uvloop,
    single-threaded runtime (the mode that measured best for one worker on 2 cores)."""
    return [
        sys.executable,
        *("-m", "granian", "--interface", "asginl", "--no-ws", "--loop", "uvloop", "--runtime-mode", "st"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", app),
    ]


def ort_version() -> str:
    """The version of the ONNX Runtime this environment has (the GPU or the CPU package)."""
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    raise RuntimeError("no onnxruntime package is installed")


def kserve_python() -> Path:
    """The interpreter of KServe's own virtual environment, created on first use (a minute or two)."""
    python = KSERVE_VENV / "bin" / "python"
    if not python.exists():
        print(f"installing kserve {KSERVE_VERSION} into {KSERVE_VENV} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(KSERVE_VENV)], check=True)
        ort = f"onnxruntime=={ort_version()}"  # the same ONNX Runtime as Fermion's, CPU build
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"kserve=={KSERVE_VERSION}", ort, "numpy"], check=True
        )
    return python


def kserve_argv(name: str, model: Path, port: int) -> list[str]:
    """KServe's model server around `model`, on loopback."""
    return [str(kserve_python()), str(BENCH / "kserve_model.py"), name, str(model), str(port)]


def serve(
    argv: list[str],
    env: dict[str, str],
    url: str,
    body: str | bytes,
    headers: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server and return once `body` posted to `url` is answered 200."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = headers or {"content-type": "application/json"}
    deadline = time.monotonic() + 120
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                if client.post(url, content=body, headers=headers).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.05)
            if proc.poll() is not None:
                break
    proc.kill()
    raise RuntimeError(f"{argv} did not serve {url}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a server this benchmark started."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(
    url: str,
    body: str,
    connections: int,
    seconds: int,
    *,
    raw_script: bool = False,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run wrk against `url` posting `body` (with `raw_script`, `body` is the whole Lua script) with `headers`."""
    lua = (
        body
        if raw_script
        else (f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
    )
    lua += "".join(f"\nwrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    threads = str(min(connections, 2))
    argv = ["wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script.name, url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not errors, out
    return {"p50": ms("50"), "p99": ms("99"), "rps": rps, "requests": requests}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) `pid` and its descendants have used so far: a server with its workers
    and its ONNX Runtime threads (Linux's /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = " ".join(p.read_text() for p in Path(f"/proc/{pid}/task").glob("*/children")).split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return own + sum(cpu_seconds(int(child)) for child in children)
