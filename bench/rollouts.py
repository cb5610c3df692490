"""What weighted aliases, telemetry and shadow traffic cost the primary path, at 1 client (wrk).

The digits CNN served by the inference function over a real nats-server, alias `production`:

1. shadow off / on (the same model as version 2 mirrored), alternated for three rounds: the
   primary's p50 with a shadow must stay within 10% of without;
2. telemetry off (no NATS URL) / on at the default 1% input sampling / on at 100%: the cost of
   per-version stats and sampling on the warm path;
3. in-process: the request-path calls of telemetry (`observe`, `sample`) in microseconds.

    .venv/bin/python bench/rollouts.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compile_bytecode, fermion_argv, free_port, register_digits, serve, stop, wrk

from fermion.infra import NatsServer
from fermion.model_store import Draft, LocalDirStore, Registry, Rollouts, Signature, TensorSpec

ROUNDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp, NatsServer(Path(tmp) / "nats") as nats:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        registry = Registry(LocalDirStore(home / "store"), home / "bench-cache")
        sig = Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 64])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
        )
        registry.register("default", "digits", {"model.onnx": model.read_bytes()}, Draft(signature=sig))
        registry.set_alias("default", "digits", "production", 1)
        compile_bytecode()
        row = {"name": "input", "shape": list(sample.shape), "datatype": "FP32", "data": sample.ravel().tolist()}
        body = json.dumps({"id": "bench", "inputs": [row]})
        env = {
            **os.environ,
            "FERMION_HOME": str(home),
            "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
            "FERMION_DEFAULT_ALIAS": "production",
            "FERMION_ALIAS_TTL_S": "0.5",
        }
        shadow = _shadow_rounds(registry, {**env, "FERMION_NATS_URL": nats.url}, body, args.seconds)
        telemetry = {
            "telemetry off": _p50({**env}, body, args.seconds),
            "telemetry on, 1% sampled": _p50({**env, "FERMION_NATS_URL": nats.url}, body, args.seconds),
            "telemetry on, 100% sampled": _p50(
                {**env, "FERMION_NATS_URL": nats.url, "FERMION_SAMPLE_RATE": "1"}, body, args.seconds
            ),
        }
    print(f"digits CNN, one OIP v2 JSON row per request, 1 connection, wrk {args.seconds}s per point")
    off, on = statistics.median(shadow["off"]), statistics.median(shadow["on"])
    print(f"shadow off p50 ms per round: {', '.join(f'{v:.3f}' for v in shadow['off'])}; median {off:.3f}")
    print(f"shadow on  p50 ms per round: {', '.join(f'{v:.3f}' for v in shadow['on'])}; median {on:.3f}")
    print(f"primary p50 with a shadow / without: {on / off:.3f} (bound 1.10)")
    base = telemetry["telemetry off"]
    for name, p50 in telemetry.items():
        print(f"{name:28} p50 {p50:.3f} ms ({p50 / base:.3f}x)")
    observe_us, sample_us = _request_path_cost()
    print(f"request-path telemetry calls: observe {observe_us:.2f} us, sample (1% rate) {sample_us:.2f} us")
    for keyed, us in _routing_cost().items():
        print(f"choosing a version of a 90/10 alias (warm, {keyed}): {us:.2f} us")


def _shadow_rounds(registry: Registry, env: dict[str, str], body: str, seconds: int) -> dict[str, list[float]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    proc = serve(fermion_argv(port), env, url, body)
    rollouts, out = Rollouts(registry), {"off": [], "on": []}
    try:
        wrk(url, body, 1, 1)
        for _ in range(ROUNDS):
            for mode in ("off", "on"):
                rollouts.set_shadow("default", "digits", "production", 2 if mode == "on" else None)
                time.sleep(1.0)  # past the alias TTL: the function sees the change
                wrk(url, body, 1, 1)  # the shadow session loads during this warm-up, not the measurement
                out[mode].append(wrk(url, body, 1, seconds)["p50"])
    finally:
        stop(proc)
    return out


def _p50(env: dict[str, str], body: str, seconds: int) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    proc = serve(fermion_argv(port), env, url, body)
    try:
        wrk(url, body, 1, 2)
        return statistics.median(wrk(url, body, 1, seconds)["p50"] for _ in range(ROUNDS))
    finally:
        stop(proc)


def _request_path_cost(n: int = 100_000) -> tuple[float, float]:
    """Microseconds per `observe` and per `sample` call (telemetry enabled, nothing sent)."""
    from types import SimpleNamespace

    from fermion.functions.inference.routing import Route
    from fermion.functions.inference.runtime import ModelRef
    from fermion.functions.inference.settings import InferenceSettings
    from fermion.functions.inference.traffic import Telemetry

    settings = InferenceSettings(nats_url="nats://127.0.0.1:1", sample_rate=0.01, sample_max_rows=10**9)
    telemetry = Telemetry(lambda: settings)
    telemetry.enabled = True
    route = Route(ModelRef("digits", None, 1), "default", "production", None, None, version=1)  # type: ignore[arg-type]
    manifest = SimpleNamespace(tenant="default", name="digits", version=1)
    model = SimpleNamespace(manifest=manifest)
    feeds, results = {"input": np.zeros((1, 64), np.float32)}, {"logits": np.zeros((1, 10), np.float32)}
    started = time.perf_counter()
    for _ in range(n):
        telemetry.observe(route, 0.001, error=False)
    observe = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        telemetry.sample(model, feeds, results, None)  # type: ignore[arg-type]
    return observe, (time.perf_counter() - started) / n * 1e6


def _routing_cost(n: int = 50_000) -> dict[str, float]:
    """Microseconds per `Traffic.route` on a warm split alias, with and without a routing key."""
    import asyncio

    from fermion.functions.inference.routing import Split, Traffic
    from fermion.functions.inference.runtime import ModelRef
    from fermion.functions.inference.settings import InferenceSettings

    settings = InferenceSettings(alias_ttl_s=3600, default_alias="production")
    traffic = Traffic(lambda: None, lambda: settings)  # type: ignore[arg-type,return-value]
    traffic.router._splits[("default", "digits", "production")] = Split.of({1: 90, 2: 10}, None, time.monotonic())
    ref = ModelRef("digits")

    async def run(headers: dict[str, str]) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await traffic.route(ref, headers)
        return (time.perf_counter() - started) / n * 1e6

    return {
        "random": asyncio.run(run({})),
        "by routing key": asyncio.run(run({"fermion-routing-key": "user-42"})),
    }


if __name__ == "__main__":
    main()
