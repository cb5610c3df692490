"""`aws s3 cp` of a dataset into the bucket ends in a promoted, served model, with no other command.

LocalStack S3 holds the registry; its bucket notifications fill an SQS queue that the ingest
function's bridge drains into `datasets.uploaded`; a pipeline rule trains and promotes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from fermion.client import Client
from fermion.events import Bus, StoredMessage
from fermion.infra import Stack
from fermion.infra.localstack import LocalStack
from tests.helpers import StackOptions, s3_client, wait_for_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack_options(localstack: LocalStack) -> StackOptions:
    """The stack's registry in a LocalStack bucket whose drops it ingests."""
    return StackOptions(localstack=localstack, bucket=f"drops-{uuid.uuid4().hex[:10]}")


async def _history(stack: Stack, subject: str) -> list[StoredMessage]:
    bus = await Bus.from_settings(stack.identity.bus_settings("admin", stack.settings.nats_url), name="test")
    try:
        return await bus.history(subject)
    finally:
        await bus.close()


def _drop(localstack: LocalStack, path: Path, bucket: str, key: str) -> None:
    if shutil.which("aws"):  # the real AWS CLI, as a user would type it
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        subprocess.run(
            ["aws", "--endpoint-url", localstack.endpoint_url, "s3", "cp", str(path), f"s3://{bucket}/{key}"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    else:
        s3_client(localstack.endpoint_url).upload_file(str(path), bucket, key)


def test_aws_s3_cp_of_a_dataset_ends_in_a_promoted_served_model(
    stack: Stack, stack_options: StackOptions, localstack: LocalStack, tmp_path: Path
) -> None:
    bucket = stack_options.bucket
    with Client.from_settings(stack.settings) as client:  # the rule over HTTP, as a user makes it
        client.put_pipeline(
            "iris-like",
            {
                "dataset_prefix": "flowers",
                "model_name": "flowers",
                "recipe": {"architecture": "mlp", "epochs": 10, "learning_rate": 0.01},
                "gate": {"alias": "production", "metric": "accuracy", "minimum": 0.9},
            },
        )
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 300)
    x = (rng.normal(size=(300, 4)) + y[:, None] * 3).astype(np.float32)
    np.savez(tmp_path / "flowers.npz", x=x, y=y)
    _drop(localstack, tmp_path / "flowers.npz", bucket, "incoming/flowers.npz")
    (tmp_path / "notes.txt").write_text("not a dataset")
    _drop(localstack, tmp_path / "notes.txt", bucket, "incoming/notes.txt")

    with Client.from_settings(stack.settings) as client:
        meta = wait_for_model(client, "flowers@production")
        assert np.mean(client.predict("flowers@production", x).argmax(1) == y) >= 0.9
        assert meta["parameters"]["metrics"]["accuracy"] >= 0.9
    refused = asyncio.run(_history(stack, "fermion.dlq.datasets.uploaded"))
    assert any("unsupported extension 'txt'" in m.headers["Fermion-Reason"] for m in refused)
    keys = {o["Key"] for o in s3_client(localstack.endpoint_url).list_objects_v2(Bucket=bucket)["Contents"]}
    assert any(k.startswith("datasets/default/flowers/") for k in keys)
    assert "models/default/flowers/aliases/production.json" in keys
    s3 = s3_client(localstack.endpoint_url)
    for key in ("models/default/flowers/versions/1/manifest.json", "models/default/flowers/versions/1/signature.json"):
        assert s3.head_object(Bucket=bucket, Key=key).get("ServerSideEncryption") == "AES256", key  # SSE-S3
    assert stack.failed() == []
