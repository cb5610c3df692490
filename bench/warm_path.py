"""Where a warm infer request's time goes, in-process: each step of the inference core timed alone.

The digits CNN in a local registry, one OIP v2 JSON row, authentication and metrics on. First the
whole request through the app's ASGI callable beside the bare ASGI app of `common.py` (no server,
no socket: what the app itself costs), then each step the core takes, with the bare app's
equivalent where it has one. Medians of rounds, microseconds per call.

    .venv/bin/python bench/warm_path.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BARE_ASGI, bench_key, oip_body, register_digits

ROUNDS = 5
CONTEXT_ROUNDS = 15  # each a pair of short runs, in alternating order


async def per_call(fn: Callable[[], Awaitable[Any]], calls: int, rounds: int = ROUNDS, warm: int = 200) -> float:
    """Median over rounds of microseconds per call of `fn` (after `warm` calls; no rounds: only those)."""
    for _ in range(warm):
        await fn()
    if not rounds:
        return 0.0
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            await fn()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(times)


def asgi_call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> Callable[[], Awaitable[None]]:
    """One POST /v2/models/digits/infer through `app`, checked for a 200."""

    async def call() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        path = "/v2/models/digits/infer"
        await app({"type": "http", "method": "POST", "path": path, "headers": headers}, receive, send)
        assert sent[0]["status"] == 200, sent

    return call


async def measure(home: Path, model: Path, body: bytes, auth: dict[str, str], calls: int) -> None:
    from unittest.mock import patch

    from pydantic_core import from_json, to_json

    import fermion.functions.inference.runtime as runtime
    from fermion.functions.inference.app import app
    from fermion.functions.inference.protocol import encode_response, parse_request, to_array
    from fermion.functions.inference.runtime import ModelRef
    from fermion.functions.inference.services import model_for, read_body

    namespace: dict[str, Any] = {}
    exec(BARE_ASGI.replace("MODEL", repr(str(model))), namespace)
    headers = {"content-length": str(len(body)), **{k.lower(): v for k, v in auth.items()}}
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    whole_app = await per_call(asgi_call(app, body, raw), calls)
    whole_bare = await per_call(asgi_call(namespace["app"], body, []), calls)

    services, security = app.state.services, app.state.security
    caller = await security.authorize(headers["authorization"], "infer", "POST /x")
    payload, binary = parse_request(body)
    feeds = {t.name: to_array(t, binary) for t in payload.inputs}
    route = await services.traffic.route(ModelRef.parse("digits"), headers, caller.tenant)
    model_ = await model_for(services, caller, route.ref)
    results = await services.scheduler.run(model_, feeds, None)
    out = results["logits"]

    async def body_read() -> None:
        messages = [{"type": "http.request", "body": body}]

        async def receive() -> dict[str, Any]:
            return messages.pop()

        await read_body(receive, headers["content-length"], 10**7)

    async def observed() -> None:
        with route.observed():
            pass

    async def bare_encode() -> None:
        to_json(
            {
                "model_name": "digits",
                "outputs": [{"name": "logits", "shape": list(out.shape), "data": out.ravel().tolist()}],
            }
        )

    metrics = services.metrics
    steps: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]] | None]] = [
        ("headers to a dict", lambda: _now({k.decode("latin-1"): v.decode("latin-1") for k, v in raw}), None),
        ("authorize (key verified)", lambda: security.authorize(headers["authorization"], "infer", "POST /x"), None),
        ("read the body", body_read, None),
        ("parse (protocol models)", lambda: _now(parse_request(body)), lambda: _now(from_json(body))),
        (
            "to arrays",
            lambda: _now({t.name: to_array(t, binary) for t in payload.inputs}),
            lambda: _now(np.asarray(payload.inputs[0].data, dtype=np.float32).reshape(payload.inputs[0].shape)),
        ),
        ("route to a version", lambda: services.traffic.route(ModelRef.parse("digits"), headers, caller.tenant), None),
        ("the model (warm)", lambda: model_for(services, caller, route.ref), None),
        ("scheduler.run (all of it)", lambda: services.scheduler.run(model_, feeds, None), None),
        ("  model.run (checks + run)", lambda: _now(model_.run(feeds, None)), None),
        (
            "  session.run",
            lambda: _now(model_.session.run(None, feeds)),
            lambda: _now(namespace["session"].run(None, feeds)),
        ),
        ("  metrics: the run", lambda: _now(metrics.ran("digits", 1, 2e-5, (0.0,))) if metrics else _now(None), None),
        ("per-version telemetry", observed, None),
        ("sample and headers", lambda: _now(route.answered(model_, feeds, results, None)), None),
        (
            "encode the answer",
            lambda: _now(encode_response(model_.name, model_.version, None, results, model_.variant, set())),
            bare_encode,
        ),
        (
            "metrics: the answer",
            lambda: _now(metrics.answered("digits", 1, "", time.perf_counter()) if metrics else None),
            None,
        ),
    ]
    print(f"one OIP v2 JSON row, digits CNN, {calls} calls x {ROUNDS} rounds, median us per call")
    print(
        f"{'whole request through the ASGI app':36} {whole_app:8.2f}   "
        f"bare ASGI app {whole_bare:8.2f}   ratio {whole_app / whole_bare:.2f}x"
    )
    for label, ours, bare in steps:
        mine = await per_call(ours, calls)
        theirs = f"   bare {await per_call(bare, calls):8.2f}" if bare is not None else ""
        print(f"  {label:34} {mine:8.2f}{theirs}")
    steps_left_out = leave_outs(app, body, headers, (caller, route, model_, results))
    await in_context(asgi_call(app, body, raw), steps_left_out, calls)
    # The input checks' NaN test as it was before all_finite: a numpy reduction on every request.
    before = patch.object(runtime, "all_finite", lambda array: bool(np.isfinite(array).all()))
    cost = await paired(asgi_call(app, body, raw), [before], calls)
    print(f"  the checks' NaN test by numpy's isfinite(...).all(), as before all_finite: {cost:+.2f} us")


def leave_outs(app: Any, body: bytes, headers: dict[str, str], kept: tuple[Any, ...]) -> list[tuple[str, list[Any]]]:
    """Each step of the request, as the patches that leave it out: its result kept from a real run
    (`kept`: the caller, the route, the model and its results)."""
    from unittest.mock import patch

    from fermion.functions.inference.app import OipRequest
    from fermion.functions.inference.routing import VERSION_HEADER
    from fermion.functions.inference.runtime import LoadedModel

    services, security = app.state.services, app.state.security
    caller, route, model, results = kept
    parsed = OipRequest.parse(body, headers, services.settings())
    version = {VERSION_HEADER: str(model.version)}  # the answer's headers, as `route.answered` gives them
    answer = parsed.encode(model, results, dict(version))

    async def authorized(*_: Any) -> Any:
        return caller

    async def routed(*_: Any) -> Any:
        return replace(route, started=time.perf_counter())  # a route times its own request

    async def ran(model: Any, feeds: dict[str, np.ndarray], wanted: Any) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        out = dict(zip(model.output_names, model.session.run(None, feeds), strict=True))
        services.metrics.ran(model.name, 1, time.perf_counter() - started, (0.0,))  # the metrics step's, kept
        return out

    def nothing(*_: Any, **__: Any) -> None:
        return None

    return [
        ("authentication (the key verified)", [patch.object(type(security), "authorize", authorized)]),
        ("parse (protocol models)", [patch.object(OipRequest, "parse", lambda *_: parsed)]),
        ("route to a version", [patch.object(services.traffic, "route", routed)]),
        ("input checks (dtype, shape, NaN)", [patch.object(LoadedModel, "check", nothing)]),
        ("scheduler + checks (session.run alone)", [patch.object(services.scheduler, "run", ran)]),
        (
            "per-version telemetry and sampling",
            [
                patch.object(type(route), "observed", lambda _: nullcontext()),
                patch.object(type(route), "answered", lambda *_: dict(version)),
            ],
        ),
        ("encode the answer", [patch.object(OipRequest, "encode", lambda *_: answer)]),
        ("metrics (the run, the answer)", [patch.object(services.metrics, n, nothing) for n in ("ran", "answered")]),
        ("access log middleware", [patch.object(app, "infer", app._serve_infer)]),
    ]


async def in_context(whole: Callable[[], Awaitable[None]], steps: list[tuple[str, list[Any]]], calls: int) -> None:
    """What leaving each step out saves of the whole request, each such run beside a whole one.

    A step timed alone runs hot in the caches; in the request it shares them with every other step,
    so the steps above add up to less than the whole. Here each is measured where it runs: per round,
    the fastest of a few short runs with the step and without it (a noisy machine only ever adds time).
    """
    saved: dict[str, list[float]] = {label: [] for label, _ in steps}
    for round_ in range(CONTEXT_ROUNDS):
        for label, patches in steps:
            saved[label].append(-await _difference(whole, patches, round_, calls))
    print(
        f"in context: the whole request with one step left out, beside the whole; per round the fastest of 5 "
        f"short runs each, medians of {CONTEXT_ROUNDS} rounds (quartiles)"
    )
    for label, xs in saved.items():
        low, middle, high = statistics.quantiles(xs, n=4)
        print(f"  {label:38} saves {middle:7.2f}   ({low:.1f}..{high:.1f})")
    total = sum(statistics.median(xs) for xs in saved.values())
    print(f"  {'sum of the savings':38}       {total:7.2f}   (they overlap: the scheduler's includes the checks)")


async def paired(whole: Callable[[], Awaitable[None]], patches: list[Any], calls: int) -> float:
    """Median over rounds of the whole request's time with `patches` minus without (the fastest of 5 each)."""
    return statistics.median([await _difference(whole, patches, r, calls) for r in range(CONTEXT_ROUNDS)])


async def _difference(whole: Callable[[], Awaitable[None]], patches: list[Any], round_: int, calls: int) -> float:
    """One round: µs per request with `patches` applied minus without, in an order alternating by round."""
    times = {}
    for on in (False, True) if round_ % 2 else (True, False):  # drift hits both alike
        with ExitStack() as stack:
            for p in patches if on else ():
                stack.enter_context(p)
            await per_call(whole, 0, rounds=0)  # the warm-up, once per side
            times[on] = min([await per_call(whole, max(calls // 20, 10), 1, 0) for _ in range(5)])
    return times[True] - times[False]


async def _now(value: Any) -> Any:
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, _ = register_digits(home)
        body = oip_body(sample).encode()
        auth = bench_key(home)  # authentication, signature verification and metrics on, as deployed
        os.environ.update(FERMION_HOME=str(home), FERMION_PROVIDERS='["CPUExecutionProvider"]')
        asyncio.run(measure(home, model, body, auth, args.calls))


if __name__ == "__main__":
    main()
