"""Cold start of a fresh inference process beside its references, interleaved in one run.

Trains the digits CNN once (in this process, no NATS) and registers it in a temporary local
registry. Then, N times each, times spawn → first correct answer to one OIP v2 JSON request:
- Fermion's inference function from its entry point (`python -m fermion.functions.inference`), the
  model fetched from the registry and sha256-verified on that first request (an empty cache);
- the same with FERMION_PRELOAD (the load runs beside the imports);
- the same app under the plain uvicorn command line;
- the Lambda handler: a fresh interpreter importing it (Lambda's init) and invoking it once with a
  Function URL event (no HTTP server, so it is not comparable with the servers above);
- the references in `common.py`: the bare-ORT floor, a hand-written FastAPI server loading the file
  from local disk, and KServe's model server (its own venv, installed on first use).

The last lines are the goals (against the bare ASGI app, and the bare Lambda handler), PASS or FAIL:
the ratio of the medians, and the median of the runs' own ratios beside its quartiles (a PASS needs both).

    .venv/bin/python bench/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

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
    stop,
    uvicorn_argv,
)


def first_answer(
    argv: list[str], env: dict[str, str], port: int, body: str, expected: int, auth: dict[str, str]
) -> float:
    """Spawn `argv`, time it to its first correct answer (sending `auth`; the references ignore it)."""
    client = httpx.Client(timeout=30)  # made before the clock starts
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    headers = {"content-type": "application/json", **auth}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    try:
        while time.perf_counter() < started + 120:
            try:
                r = client.post(url, content=body, headers=headers)
                if r.status_code == 200 and int(np.argmax(r.json()["outputs"][0]["data"])) == expected:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.005)
            if proc.poll() is not None:
                break
        raise RuntimeError(f"{argv}: no correct answer")
    finally:
        client.close()
        stop(proc)


FLOOR = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {"input": np.zeros((1, 64), np.float32)})
"""


LAMBDA = """
import asyncio, json, sys
asyncio.set_event_loop(asyncio.new_event_loop())  # Lambda's runtime has one on its main thread
from fermion.functions.inference.handler import handler  # the init phase
body, expected, authorization = sys.argv[1], int(sys.argv[2]), sys.argv[3]
http = {"method": "POST", "path": "/v2/models/digits/infer", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}
context = {"http": http,
           "stage": "$default", "requestId": "r", "routeKey": "$default", "accountId": "1", "apiId": "a",
           "domainName": "a.lambda-url.us-east-1.on.aws", "domainPrefix": "a", "time": "", "timeEpoch": 0}
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v2/models/digits/infer", "rawQueryString": "",
         "headers": {"content-type": "application/json", "authorization": authorization},
         "requestContext": context, "body": body,
         "isBase64Encoded": False}
out = handler(event, None)  # the first invocation: fetch, verify, session, run
logits = json.loads(out["body"])["outputs"][0]["data"]
assert out["statusCode"] == 200 and logits.index(max(logits)) == expected, out
"""


# The Lambda path's reference: a handler with no framework and no Mangum, the model file from local
# disk, the body parsed with pydantic_core, the same Function URL event.
BARE_LAMBDA = """
import json, sys
import numpy as np, onnxruntime as ort
from pydantic_core import from_json, to_json
session = ort.InferenceSession(sys.argv[4], providers=["CPUExecutionProvider"])

def handler(event, context):
    t = from_json(event["body"])["inputs"][0]
    (out,) = session.run(None, {"input": np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])})
    answer = {"model_name": "digits", "outputs": [{"name": "logits", "shape": list(out.shape), "datatype": "FP32",
              "data": out.ravel().tolist()}]}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": to_json(answer).decode()}

body, expected = sys.argv[1], int(sys.argv[2])
out = handler({"body": body, "rawPath": "/v2/models/digits/infer"}, None)
logits = json.loads(out["body"])["outputs"][0]["data"]
assert out["statusCode"] == 200 and logits.index(max(logits)) == expected, out
"""


# What Lambda's runtime sets in every function's environment that the handler reads. With it, the
# answers are counted as CloudWatch EMF lines and prometheus-client is never imported (without it, the
# first invocation also built the Prometheus registry, which no Lambda does: prometheus-client's import
# alone is ~14 ms in bench/cold_imports.py).
ON_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "fermion-inference"}


def lambda_cold(env: dict[str, str], body: str, expected: int, auth: dict[str, str], script: str = LAMBDA) -> float:
    """A fresh interpreter through Lambda's init (importing the handler) and first invocation."""
    started = time.perf_counter()
    argv = [sys.executable, "-c", script, body, str(expected), auth["Authorization"], env.get("BARE_MODEL", "")]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)  # its EMF lines
    return time.perf_counter() - started


def floor(model: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, str(model)], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--without-kserve", action="store_true", help="skip KServe (its venv installs on first use)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, expected = register_digits(home)
        auth = bench_key(home)  # authentication and signature verification on, as deployed
        (home / "hand.py").write_text(HAND_WRITTEN.replace("MODEL", repr(str(model))))
        (home / "bare.py").write_text(BARE_ASGI.replace("MODEL", repr(str(model))))
        compile_bytecode(home / "hand.py", home / "bare.py")
        body = oip_body(sample)
        base = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}

        def fermion(port: int, **extra: str) -> tuple[list[str], dict[str, str]]:
            cache = tempfile.mkdtemp(prefix="cache-", dir=home)  # an empty cache: a real fetch + verify
            return fermion_argv(port), {**base, "FERMION_CACHE_DIR": cache, **extra}

        def under_uvicorn(port: int) -> tuple[list[str], dict[str, str]]:
            _, env = fermion(port)
            return uvicorn_argv("fermion.functions.inference.app:app", port), env

        servers = {
            "fermion (registry fetch + sha256 on 1st request)": fermion,
            "fermion, FERMION_PRELOAD": lambda port: fermion(port, FERMION_PRELOAD="digits"),
            "fermion app under the uvicorn CLI": under_uvicorn,
            "hand-written FastAPI (file from local disk)": lambda port: (
                uvicorn_argv("hand:app", port),
                {**base, "PYTHONPATH": str(home)},
            ),
            "KServe 0.21 ModelServer": lambda port: (kserve_argv("digits", model, port), base),
            "bare ASGI (no framework, file from local disk)": lambda port: (
                uvicorn_argv("bare:app", port),
                {**base, "PYTHONPATH": str(home)},
            ),
        }
        if args.without_kserve:
            del servers["KServe 0.21 ModelServer"]
        lambda_title = "Lambda handler: init + first invocation (no HTTP)"
        bare_lambda = "bare Lambda handler (no framework, file from local disk)"
        runs: dict[str, list[float]] = {
            "bare ORT floor (import, session, run)": [],
            **{k: [] for k in servers},
            lambda_title: [],
            bare_lambda: [],
        }
        if not args.without_kserve:
            kserve_argv("digits", model, 0)  # installs KServe's venv now, outside the timings
        for _ in range(args.runs):  # interleaved, so drift on a noisy machine hits all alike
            runs["bare ORT floor (import, session, run)"].append(floor(model))
            for title, make in servers.items():
                port = free_port()
                argv, env = make(port)
                runs[title].append(first_answer(argv, env, port, body, expected, auth))
            runs[lambda_title].append(lambda_cold({**fermion(0)[1], **ON_LAMBDA}, body, expected, auth))
            bare_env = {**base, **ON_LAMBDA, "BARE_MODEL": str(model)}
            runs[bare_lambda].append(lambda_cold(bare_env, body, expected, auth, BARE_LAMBDA))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    hand = medians["hand-written FastAPI (file from local disk)"]
    kserve = medians.get("KServe 0.21 ModelServer")
    bare = medians["bare ASGI (no framework, file from local disk)"]
    print(f"digits CNN, spawn -> first correct answer, {args.runs} interleaved runs, medians (min..max):")
    for title, xs in runs.items():
        m = medians[title]
        versus = f"{m / kserve:.2f}x KServe  " if kserve else ""
        print(
            f"  {title:56s} {m * 1000:6.0f} ms ({min(xs) * 1000:.0f}..{max(xs) * 1000:.0f})  "
            f"{m / hand:.2f}x hand-written  {versus}{m / bare:.2f}x bare ASGI"
        )
    print(
        f"Lambda: fermion's handler {medians[lambda_title] / medians[bare_lambda]:.2f}x the bare handler "
        "(init + first invocation, each with its own file: fermion's fetched from the registry and verified)"
    )
    for figure, ours, theirs, goal in GOALS:
        # The ratio of the medians, and run by run (the two starts of one round, a few seconds apart at
        # most): on a noisy machine one lucky median can pass alone, so a PASS needs both.
        ratio = medians[ours] / medians[theirs]
        paired = [a / b for a, b in zip(runs[ours], runs[theirs], strict=True)]
        low, middle, high = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) > 1 else paired * 3
        verdict = "PASS" if max(ratio, middle) <= goal else "FAIL"
        print(
            f"GOAL {figure}: {ratio:.2f}x (goal <= {goal}x): {verdict}  "
            f"[run by run: median {middle:.2f}x, quartiles {low:.2f}..{high:.2f}x]"
        )


# (figure, fermion's row, the reference's row, the most fermion may take as a multiple of it)
GOALS = [
    (
        "cold start, spawn -> first answer, vs the bare ASGI app on uvicorn",
        "fermion (registry fetch + sha256 on 1st request)",
        "bare ASGI (no framework, file from local disk)",
        1.2,
    ),
    (
        "Lambda init + first invocation, vs a bare Lambda handler",
        "Lambda handler: init + first invocation (no HTTP)",
        "bare Lambda handler (no framework, file from local disk)",
        1.3,
    ),
]


if __name__ == "__main__":
    main()
