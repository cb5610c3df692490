"""Registry fetch time on S3 (LocalStack), beside a raw boto3 get_object of the same bytes, in one run.

For each payload size: the raw `get_object().read()` floor; the registry's cache miss (download to a
temporary file, sha256 and size checked against the manifest, renamed into the cache); the cache
hit (the cached file re-verified before it is handed out); and resolving `name` → latest → manifest.
Runs are interleaved so machine noise hits all alike; medians are printed.

    .venv/bin/python bench/registry_fetch.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3

from fermion.infra.localstack import LocalStack
from fermion.model_store import Draft, Registry, Signature, TensorSpec
from fermion.model_store.backends.s3 import S3Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sig = Signature(
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
    )
    with (
        tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp,
        LocalStack(Path(tmp) / "ls", port=free_port()) as ls,
    ):
        client = boto3.client(
            "s3",
            endpoint_url=ls.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket="bench")
        cache = Path(tmp) / "cache"
        registry = Registry(S3Store("bench", client=client), cache)
        print(f"LocalStack S3 on {ls.endpoint_url}, {args.runs} interleaved runs, medians:")
        print(f"{'payload':>9}  {'boto3 get':>10}  {'miss':>10}  {'hit':>10}  {'resolve':>10}  miss/get  hit/get")
        for size in (200_000, 5_000_000, 50_000_000):
            name = f"m{size}"
            manifest = registry.register("default", name, {"model.onnx": os.urandom(size)}, Draft(signature=sig))
            key = f"models/default/{name}/versions/{manifest.version}/model.onnx"
            raw, miss, hit, resolve = [], [], [], []
            for _ in range(args.runs):
                raw.append(timed(lambda: client.get_object(Bucket="bench", Key=key)["Body"].read()))  # noqa: B023
                shutil.rmtree(cache / "sha256", ignore_errors=True)
                (cache / "sha256").mkdir(parents=True)
                miss.append(timed(lambda: registry.fetch(manifest)))  # noqa: B023
                hit.append(timed(lambda: registry.fetch(manifest)))  # noqa: B023
                resolve.append(timed(lambda: registry.lookup("default", name)))  # noqa: B023
            r, m, h, v = (statistics.median(x) * 1000 for x in (raw, miss, hit, resolve))
            print(f"{size / 1e6:7.1f}MB  {r:8.2f}ms  {m:8.2f}ms  {h:8.2f}ms  {v:8.2f}ms  {m / r:7.2f}x  {h / r:6.2f}x")


if __name__ == "__main__":
    main()
