"""What a cold start imports beyond the bare ASGI app, step by step, in fresh interpreters.

Each run is a new interpreter that first imports what the bare app of `common.py` needs (numpy,
ONNX Runtime, pydantic_core, uvicorn's server on asyncio), then, one at a time, what Fermion's
inference function adds, and last the function itself (its import and `create_app()`): each
step's time is what that step adds to the ones before it. A second sequence does the same for the
Lambda handler, after what cold_start.py's bare Lambda handler imports (no uvicorn, no asyncio): its
asyncio, Mangum, pydantic, cryptography, then the handler. The garbage collector is off, as it is
while the entry point and the Lambda handler import. Medians over runs, in milliseconds.
The pydantic step includes building one model, since the first model class built pays for
pydantic's schema machinery, whichever class it is; like the function, it searches for no plugins
(PYDANTIC_DISABLE_PLUGINS, functions/inference/__init__.py).

    .venv/bin/python bench/cold_imports.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PYDANTIC = "import pydantic\nclass _First(pydantic.BaseModel):\n x: int"
CRYPTOGRAPHY = "import cryptography.hazmat.primitives.asymmetric.ed25519"
SERVER = [
    ("the bare app's: numpy, onnxruntime, pydantic_core", "import numpy, onnxruntime, pydantic_core"),
    (
        "the bare app's: uvicorn's server and asyncio",
        "import asyncio, uvicorn.server, uvicorn.protocols.http.httptools_impl",
    ),
    ("pydantic models (import + the first model built)", PYDANTIC),
    ("prometheus-client", "import prometheus_client"),
    ("cryptography (Ed25519 signatures)", CRYPTOGRAPHY),
    ("mangum (the Lambda handler only)", "import mangum"),
    (
        "the function: its modules + create_app()",
        "from fermion.functions.inference.app import create_app\ncreate_app()",
    ),
    ("pydantic-settings, had the function imported it", "import pydantic_settings"),
]

# The Lambda path, after what the bare Lambda handler of cold_start.py imports: it has no event loop,
# and Mangum runs the ASGI app on one, so asyncio is the handler's before any of Fermion's code.
LAMBDA = [
    ("the bare Lambda handler's: numpy, onnxruntime, pydantic_core", "import json, numpy, onnxruntime, pydantic_core"),
    ("asyncio (Mangum runs the app on an event loop)", "import asyncio"),
    ("mangum", "import mangum"),
    ("pydantic models (import + the first model built)", PYDANTIC),
    ("cryptography (Ed25519 signatures)", CRYPTOGRAPHY),
    (
        "the handler: the function's modules + create_app()",
        "import os\nos.environ['AWS_LAMBDA_FUNCTION_NAME'] = 'fermion-inference'\n"
        "from fermion.functions.inference.handler import handler",
    ),
]

CHILD = """
import gc, json, sys, time
gc.disable()  # as the entry point and the Lambda handler import (a collection would land on any one step)
steps = json.loads(sys.argv[1])
times = []
for code in steps:
    started = time.perf_counter()
    exec(code, {})
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for title, steps in (("a cold start's imports", SERVER), ("the Lambda handler's init", LAMBDA)):
        report(title, steps, args.runs)


def report(title: str, steps: list[tuple[str, str]], count: int) -> None:
    codes = json.dumps([code for _, code in steps])
    runs: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as home:
        # As the entry point and the Lambda handler start: pydantic searches no distribution for plugins.
        env = {**os.environ, "FERMION_HOME": home, "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        env["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
        for _ in range(count):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, codes], env=env, capture_output=True, text=True, check=True
            )
            runs.append(json.loads(out.stdout))
    print(f"{title}, each step after those above it, {count} fresh interpreters, medians (min..max):")
    for i, (step, _) in enumerate(steps):
        xs = [run[i] for run in runs]
        print(f"  {step:56s} {statistics.median(xs):6.1f} ms ({min(xs):.1f}..{max(xs):.1f})")


if __name__ == "__main__":
    main()
