"""`fermion up`'s stack for the end-to-end tests: free loopback ports, its own home, and the variants they need."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fermion.infra import Stack, StackSettings
from fermion.infra.localstack import LocalStack
from fermion.infra.provision import s3_drop_queue
from tests.helpers.ports import free_port


@dataclass(frozen=True)
class StackOptions:
    """How a test module's stack differs from `fermion up`'s defaults (the module overrides `stack_options`)."""

    # The registry in `bucket` on this LocalStack, whose `incoming/` drops the ingest function bridges.
    localstack: LocalStack | None = None
    bucket: str = field(default_factory=lambda: f"fermion-{uuid.uuid4().hex[:10]}")
    # Set in the test process for the stack's life, so its processes inherit it (OpenTelemetry, say).
    env: dict[str, str] = field(default_factory=dict)
    # Trainers' /metrics on a free port rather than the fixed default, for a test that scrapes them.
    trainer_metrics: bool = False


def _s3_env(options: StackOptions, localstack: LocalStack) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FERMION_STORE_URL": f"s3://{options.bucket}",
        "FERMION_S3_ENDPOINT_URL": localstack.endpoint_url,
    }


@contextmanager
def running_stack(home: Path, options: StackOptions) -> Iterator[Stack]:
    """`fermion up`'s stack on free loopback ports with `home` as FERMION_HOME, varied by `options`."""
    localstack = options.localstack
    env = {**options.env, **(_s3_env(options, localstack) if localstack else {})}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        extra: dict[str, Any] = {}
        if options.trainer_metrics:  # the functions that serve /metrics on a port of their own
            extra = {"trainer_metrics_port": free_port(), "monitor_metrics_port": free_port()}
        if localstack:  # the drop queue is made with the S3 environment above, as a user's shell has it
            queue = s3_drop_queue(options.bucket, endpoint_url=localstack.endpoint_url)
            extra |= {"drop_queue_url": queue, "s3_endpoint_url": localstack.endpoint_url}
        settings = StackSettings(
            home=home, nats_port=free_port(), ingest_port=free_port(), inference_port=free_port(), **extra
        )
        with Stack(settings) as stack:
            yield stack


def cli_env(s: StackSettings, **extra: str) -> dict[str, str]:
    """The environment that points the `fermion` CLI at the stack `s` describes (wide: no cut columns)."""
    return {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "200",
        **extra,
    }
