"""A cold function's first request on S3, with and without the early fetch, interleaved in one run.

The first request to a fresh inference function reads, in order: the API key's record, the alias,
then the version's manifest, its signature and the model file. From S3 the signature is always read
beside the manifest; with `early_fetch` (the default) the model file is downloaded beside them too, before
the manifest has said what it must hash to. This bench measures what that saves.

LocalStack serves the S3 API on loopback. A proxy in front of it adds a round-trip time to every
connection and every exchange (half each way, and one for the TCP handshake), as a store in
another building would: `--rtt-ms 0` is LocalStack direct. The first row is the local directory
store, which reads in turn either way (no round trip to save): its ratio is the bench's noise.
Each run builds a fresh app (a new boto3 client, an empty model cache, nothing authenticated) and
times its first infer request in process: key read, alias read, manifest, signature, model file,
sha256, signature check, ONNX Runtime session, run. Server start and imports are not in it
(bench/cold_start.py has those). Medians are printed.

    .venv/bin/python bench/first_request.py [--runs 9] [--rtt-ms 0 10 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import digits_signature, free_port, oip_body, register_digits

from fermion.infra.localstack import LocalStack
from fermion.model_store import (
    Draft,
    KeyStore,
    LocalDirStore,
    ObjectStore,
    Registry,
    Signer,
    generate_key_pair,
)
from fermion.model_store.backends.s3 import S3Store
from fermion.model_store.signing import Verifier


class Delay:
    """A TCP proxy on 127.0.0.1 that holds every chunk for half the RTT each way (and the handshake one RTT)."""

    def __init__(self, upstream_port: int, rtt_s: float) -> None:
        self.upstream_port, self.rtt_s = upstream_port, rtt_s
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait()

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        started.set()
        self.loop.run_forever()

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.rtt_s)  # SYN, SYN-ACK
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w), return_exceptions=True)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sink.write(data)
                await sink.drain()
            sink.close()

        delivering = asyncio.ensure_future(deliver())
        try:
            while data := await source.read(1 << 16):
                queue.put_nowait((time.monotonic() + self.rtt_s / 2, data))
        finally:
            queue.put_nowait((0.0, b""))
            await delivering

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of its own (a fresh function's), for LocalStack, which takes any credentials."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def first_request(
    store: ObjectStore, home: Path, public: str, key: str, early: bool, body: str, expected: int
) -> float:
    """Seconds from a fresh app's first infer request to its correct answer."""
    from fastapi.testclient import TestClient

    from fermion.functions.inference.app import create_app
    from fermion.functions.inference.runtime import ModelRuntime
    from fermion.functions.inference.settings import InferenceSettings

    registry = Registry(store, home / "cache", verifier=Verifier.from_texts([public]))
    settings = InferenceSettings(home=home, providers=["CPUExecutionProvider"], early_fetch=early)
    runtime = ModelRuntime(registry, settings)
    with TestClient(create_app(lambda: runtime, lambda: settings)) as http:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        started = time.perf_counter()
        r = http.post("/v2/models/digits/infer", content=body, headers=headers)
        seconds = time.perf_counter() - started
    r.raise_for_status()
    if int(np.argmax(r.json()["outputs"][0]["data"])) != expected:
        raise RuntimeError(f"wrong answer: {r.text}")
    return seconds


def publish(store: ObjectStore, model: bytes, private: Path, cache: Path) -> str:
    """The digits model as a signed version under `production`, and an infer key; the key."""
    writer = Registry(store, cache, signer=Signer.from_file(private))
    manifest = writer.register("default", "digits", {"model.onnx": model}, Draft(signature=digits_signature()))
    writer.set_alias("default", "digits", "production", manifest.version)
    return KeyStore(store).create("default", ["infer"], name="bench")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 10.0, 30.0])
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp,
        LocalStack(Path(tmp) / "ls", port=free_port()) as ls,
    ):
        root = Path(tmp)
        model_file, row, expected = register_digits(root / "train")
        private, public = generate_key_pair(root / "keys")
        admin = s3_client(ls.endpoint_url)
        admin.create_bucket(Bucket="bench")
        keys = {
            "s3": publish(S3Store("bench", client=admin), model_file.read_bytes(), private, root / "w1"),
            "local": publish(LocalDirStore(root / "local"), model_file.read_bytes(), private, root / "w2"),
        }
        body = oip_body(row)
        # Untimed: the first app of the process pays for imports the runs after it do not.
        first_request(
            LocalDirStore(root / "local"),
            root / "warm-up",
            public.read_text().strip(),
            keys["local"],
            True,
            body,
            expected,
        )
        print(f"digits CNN ({model_file.stat().st_size / 1e3:.0f} kB), {args.runs} interleaved runs, medians:")
        print(f"{'store':>16}  {'early fetch':>12}  {'without':>10}  {'saved':>8}  without/early")
        for rtt_ms in [None, *args.rtt_ms]:  # None: the local directory store
            proxy = Delay(ls.port, rtt_ms / 1000) if rtt_ms else None
            endpoint = f"http://127.0.0.1:{proxy.port}" if proxy else ls.endpoint_url
            times: dict[bool, list[float]] = {True: [], False: []}
            try:
                for run in range(args.runs):
                    for early in (True, False) if run % 2 == 0 else (False, True):
                        home = root / f"run-{rtt_ms}-{run}-{early}"
                        client = s3_client(endpoint) if rtt_ms is not None else None
                        store = S3Store("bench", client=client) if client else LocalDirStore(root / "local")
                        try:
                            seconds = first_request(
                                store,
                                home,
                                public.read_text().strip(),
                                keys["s3" if client else "local"],
                                early,
                                body,
                                expected,
                            )
                        finally:
                            if client is not None:
                                client.close()
                        times[early].append(seconds)
            finally:
                if proxy:
                    proxy.close()
            on, off = (statistics.median(times[e]) * 1000 for e in (True, False))
            where = "local directory" if rtt_ms is None else f"S3, RTT {rtt_ms:.0f} ms"
            print(f"{where:>16}  {on:10.1f}ms  {off:8.1f}ms  {off - on:6.1f}ms  {off / on:6.2f}x")
        admin.close()


if __name__ == "__main__":
    main()
