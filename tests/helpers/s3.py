"""Clients of LocalStack's S3 API."""

from __future__ import annotations

from typing import Any

import boto3

_open: list[Any] = []


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for LocalStack (which accepts any credentials), closed after the test that made it.

    A boto3 client dropped unclosed leaves its pooled sockets to the garbage collector, whose
    ResourceWarning then fails whichever later test happens to be running.
    """
    client = boto3.client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    _open.append(client)
    return client


def close_s3_clients() -> None:
    """Close every client `s3_client` made so far."""
    while _open:
        _open.pop().close()
