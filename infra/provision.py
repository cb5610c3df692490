"""Provisioning, an admin step: JetStream's streams and consumers; a bucket whose `incoming/` drops go to SQS.

`python -m fermion.infra.provision` provisions JetStream with the NATS identity in the environment
(the admin's: no unit's role may create or change streams and consumers) and the consumer policy the
trainers use (`FERMION_ACK_WAIT_S`, `FERMION_MAX_DELIVER`, `FERMION_STREAM_REPLICAS`).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
from pydantic import Field

from fermion.events import Bus, BusSettings
from fermion.events.streams import ConsumerPolicy


class ProvisionSettings(BusSettings):
    """The admin's NATS identity and the durable consumers' policy (the trainers' own settings names)."""

    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    create_bucket: bool = Field(default=False, description="create the store's S3 bucket if missing (MinIO, tests)")
    admin_record_file: Path | None = Field(
        default=None,
        description="a deployment's first admin key record (its hash: `fermion deploy`), put in the store once",
    )

    def policy(self) -> ConsumerPolicy:
        """The policy of the work-queue consumers."""
        return ConsumerPolicy(ack_wait_s=self.ack_wait_s, max_deliver=self.max_deliver)


async def provision_streams(settings: ProvisionSettings) -> None:
    """Create or update the streams and every durable consumer (idempotent)."""
    bus = await Bus.from_settings(settings, name="fermion-provision")
    try:
        await bus.provision(settings.policy(), replicas=settings.stream_replicas)
    finally:
        await bus.close()


def s3_drop_queue(
    bucket: str, *, endpoint_url: str | None, region: str = "us-east-1", queue_name: str = "fermion-s3-drops"
) -> str:
    """Create the bucket and an SQS queue, route `incoming/` ObjectCreated events to it; returns the queue URL."""
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    with closing(s3), closing(sqs):
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        queue_url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy: dict[str, Any] = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                    }
                ],
            },
        )
    return queue_url


def ensure_bucket() -> bool:
    """Create the S3 bucket the environment's store names, if missing; True if made."""
    from urllib.parse import urlparse

    from fermion.model_store import StoreSettings

    store = StoreSettings()
    bucket = urlparse(store.store_url).netloc
    with closing(
        boto3.client("s3", endpoint_url=store.s3_endpoint_url, region_name=store.s3_region or "us-east-1")
    ) as s3:
        if bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            return False
        s3.create_bucket(Bucket=bucket)
        return True


def register_admin(record_file: Path) -> bool:
    """Put a deployment's first admin key record in the store the environment names; False if it was there."""
    from fermion.model_store import KeyRecord, KeyStore, StoreSettings, open_registry

    record = KeyRecord.model_validate_json(record_file.read_text())
    return KeyStore(open_registry(StoreSettings(), signs=False).store).add(record)


def main() -> None:
    """Entry point: `python -m fermion.infra.provision` (JetStream, with the environment's admin identity)."""
    settings = ProvisionSettings()
    if settings.create_bucket and ensure_bucket():
        print("bucket created")
    asyncio.run(provision_streams(settings))
    print("JetStream provisioned: streams and durable consumers")
    if settings.admin_record_file is not None:
        added = register_admin(settings.admin_record_file)
        print("first admin key registered" if added else "first admin key already registered")


if __name__ == "__main__":
    main()
