"""`fermion up` and `fermion demo`: a local stack on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import signal
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fermion.client import Client, FermionError
from fermion.infra import StackSettings

from .console import console, fail, say
from .follow import follow_job


def _print_endpoints(s: StackSettings) -> None:
    console.print(f"  home       {s.home}")
    console.print(f"  nats       {s.nats_url}")
    console.print(f"  ingest     {s.ingest_url}   (POST /v1/datasets, /v1/trainings)")
    console.print(f"  inference  {s.inference_url}   (Open Inference Protocol v2: /v2/models/NAME/infer)")
    console.print(f"  logs       {s.home / 'logs'}")
    console.print(f"  api key    {s.home / 'admin.key'}   (admin; the CLI uses it unless FERMION_API_KEY is set)")


# What each StackSettings field `up` reads means; the defaults come from StackSettings itself.
UP_SETTINGS = {
    "home": "where the stack keeps its state: NATS, the registry, the cache, logs, keys",
    "host": "the address every function listens on",
    "nats_port": "nats-server's port",
    "ingest_port": "the ingest function's port (its console at /console)",
    "inference_port": "the inference function's port",
    "trainers": "how many trainer processes share the work",
    "trainer_metrics_port": "trainer i serves /metrics on this port + i (0: none)",
    "drop_queue_url": "an SQS queue of S3 drops to bridge (LocalStack)",
    "s3_endpoint_url": "the S3 API's endpoint, with FERMION_STORE_URL=s3://...",
}


def up_help() -> str:
    """`fermion up --help`'s list of the environment it reads, each with its default."""
    fields = StackSettings.model_fields
    lines = [
        f"FERMION_{name.upper()} (default {'unset' if fields[name].default is None else fields[name].default}): {what}"
        for name, what in UP_SETTINGS.items()
    ]
    lines.append("FERMION_STORE_URL (default file://FERMION_HOME/store): the registry, or s3://BUCKET/PREFIX")
    return "Settings, from the environment:\n\n" + "\n\n".join(lines)


def up() -> None:
    """Run nats-server, a trainer, ingest and inference on 127.0.0.1 until Ctrl-C; prints the console's URL."""
    # The stack imports every function's needs (the `local` extra): only here, so the base CLI starts without.
    from fermion.infra import Stack, is_up
    from fermion.infra.supervisor import Supervisor

    settings = StackSettings()
    if is_up(settings):
        raise fail(f"a stack already answers on {settings.ingest_url} and {settings.inference_url}")
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        raise fail("fermion up runs a trainer, which needs torch and onnx: pip install 'fermion[local]'")
    console.print("[bold]Starting Fermion[/] (ports: FERMION_NATS_PORT, FERMION_INGEST_PORT, FERMION_INFERENCE_PORT)")
    stack = Stack(settings)
    stack.start()
    _print_endpoints(settings)
    say(f"console: {settings.ingest_url}/console")
    console.print("[green]up[/] — Ctrl-C to stop")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    supervisor = Supervisor(stack)  # a crashed function (or nats-server) is restarted with back-off
    try:
        while not stopping:
            for line in supervisor.check():
                console.print(f"[yellow]{line}[/] (logs: {settings.home / 'logs'})")
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        stack.stop()
        console.print("stopped")


def demo(
    epochs: Annotated[int, typer.Option(help="training epochs")] = 15,
) -> None:
    """Upload scikit-learn's digits, train a CNN, serve it, and report the served accuracy."""
    from fermion.infra import Stack, is_up

    started = time.perf_counter()
    settings = StackSettings()
    stack = None
    if not is_up(settings):
        console.print("[bold]Starting a local stack[/] for the demo")
        stack = Stack(settings).start()
        _print_endpoints(settings)
    try:
        _run_demo(settings, epochs, started)
    finally:
        if stack:
            stack.stop()


def _run_demo(settings: StackSettings, epochs: int, started: float) -> None:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise FermionError("the demo needs scikit-learn: pip install 'fermion[demo]'") from exc
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    held = order[: len(x) // 5]
    train = order[len(x) // 5 :]
    path = settings.home / "demo" / "digits.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x[train], y=y[train])

    with Client.from_settings(settings) as client:
        _demo_flow(client, settings, x, y, held, path, epochs, started)


def _demo_flow(
    client: Client,
    settings: StackSettings,
    x: np.ndarray,
    y: np.ndarray,
    held: np.ndarray,
    path: Path,
    epochs: int,
    started: float,
) -> None:
    ds = client.upload(path, name="digits")
    console.print(f"uploaded [bold]digits[/] ({len(x) - len(held)} rows, sha256 {ds['sha256'][:12]}…)")
    requested = time.perf_counter()
    job = client.train("digits", "digits", sha256=ds["sha256"], architecture="cnn", epochs=epochs, learning_rate=2e-3)
    console.print(f"training.requested: job {job}")
    result = follow_job(client, job, epochs)
    console.print(
        f"registered [bold]digits[/] version {result.data.version}: "
        f"held-out accuracy {result.data.metrics['accuracy']:.4f}, "
        f"macro-F1 {result.data.metrics['macro_f1']:.4f}"
    )
    first = time.perf_counter()
    logits = client.predict("digits", x[held])
    served = time.perf_counter()
    accuracy = float(np.mean(logits.argmax(axis=1) == y[held]))
    meta = client.metadata("digits")
    console.print(f"served by {settings.inference_url} on {meta['parameters']['providers']}")
    console.print(f"[bold green]served accuracy on {len(held)} held-out digits: {accuracy:.4f}[/]")
    console.print(
        f"timings: training.requested → served answer {served - requested:.1f}s; "
        f"first inference request (load + verify + run) {served - first:.3f}s; "
        f"demo wall time {served - started:.1f}s"
    )
