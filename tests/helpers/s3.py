"""Clients of LocalStack's S3 API."""

from __future__ import annotations

from typing import Any

import boto3


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for LocalStack (which accepts any credentials)."""
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
