"""S3 `ObjectCreated` notifications → `datasets.uploaded`: drop a file into the bucket, a pipeline runs.

Files dropped under `incoming/` (`incoming/{name}.{ext}`, or `incoming/{tenant}/{name}.{ext}`) are
validated, stored content-addressed under `datasets/…` like an HTTP upload, and announced. Two ways in:

- on AWS, `handler` is a Lambda subscribed to the bucket's notifications (or to an SQS queue of them);
- locally, `python -m fermion.functions.ingest.s3_events --queue-url URL` drains the SQS queue that
  LocalStack's bucket notifications fill, through the same code.

Files dropped under `score/` (`score/MODEL/{name}.{ext}`, or `score/TENANT/MODEL/{name}.{ext}`; MODEL
may be `NAME@ALIAS` or `NAME:VERSION`) are stored the same way, then scored with that model
(`scoring.requested`, issue 26); the same file dropped twice is one job.

A file that is not a dataset is dead-lettered on `fermion.dlq.datasets.uploaded` with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

import boto3

from fermion.events import Bus, DatasetRef, DatasetUploaded, derive_id, subjects, upload_id
from fermion.events.training import TEACHER_REF
from fermion.model_store import (
    DatasetFormat,
    DatasetStore,
    Registry,
    RegistryError,
    StoreError,
    check_name,
    dataset_format,
    open_registry,
)
from fermion.model_store.datasets import FORMATS
from fermion.service.lifecycle import stop_on_signals

from .datasets import check_table, upload_limits, validate_dataset
from .datasets_api import DatasetSelector
from .errors import BadRequest, BadUpload, UploadTooLarge
from .pictures import image_limits
from .scorings_api import ScoringSpec, request_scoring
from .settings import IngestSettings, get_settings

log = logging.getLogger("fermion.ingest.s3")

INCOMING = "incoming/"
SCORE = "score/"


@dataclass(frozen=True)
class Drop:
    """A file dropped into the bucket, and what it claims to be."""

    key: str
    tenant: str
    name: str
    format: DatasetFormat
    model: str | None = None
    """A drop under `score/`: the model reference that scores it."""


def parse_key(key: str) -> Drop:
    """`incoming/[tenant/]name.ext` or `score/[tenant/]model/name.ext` → a Drop; BadUpload naming what is wrong."""
    if key.startswith(SCORE):
        parts = PurePosixPath(key.removeprefix(SCORE)).parts
        if len(parts) not in (2, 3) or not re.fullmatch(TEACHER_REF, parts[-2]):
            raise BadUpload(f"{key!r} is not a scoring drop: use {SCORE}MODEL/NAME.EXT or {SCORE}TENANT/MODEL/NAME.EXT")
        drop = parse_key(INCOMING + "/".join([*parts[:-2], parts[-1]]))
        return Drop(key, drop.tenant, drop.name, drop.format, model=parts[-2])
    parts = PurePosixPath(key.removeprefix(INCOMING)).parts
    if not key.startswith(INCOMING) or len(parts) not in (1, 2):
        raise BadUpload(f"{key!r} is not a dataset drop: use {INCOMING}NAME.EXT or {INCOMING}TENANT/NAME.EXT")
    tenant = parts[0] if len(parts) == 2 else "default"
    stem, _, ext = parts[-1].rpartition(".")
    if (fmt := dataset_format(ext)) is None:
        raise BadUpload(f"{key!r}: unsupported extension {ext!r}; use one of {', '.join(FORMATS)}")
    try:
        return Drop(key, check_name("tenant", tenant), check_name("dataset", stem.lower()), fmt)
    except RegistryError as exc:
        raise BadUpload(f"{key!r}: {exc}") from exc


def s3_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """S3 notification records from an S3 event, or from an SQS event whose bodies are S3 events."""
    records = []
    for record in event.get("Records", []):
        if record.get("eventSource") == "aws:sqs" or "body" in record:
            records.extend(s3_records(json.loads(record["body"])))
        elif record.get("eventSource") == "aws:s3" and str(record.get("eventName", "")).startswith("ObjectCreated"):
            records.append(record)
    return records


async def ingest_records(
    records: list[dict[str, Any]], datasets: DatasetStore, bus: Bus, registry: Registry | None = None
) -> list[str]:
    """Store and announce each dropped dataset (and score a `score/` drop with `registry`); the outcome per record."""
    outcomes = []
    for record in records:
        key = unquote_plus(record["s3"]["object"]["key"])
        try:
            drop = parse_key(key)
            data, _ = await asyncio.to_thread(datasets.store.get, key)
            await asyncio.to_thread(
                validate_dataset, data, drop.format, upload_limits(get_settings()), image_limits(get_settings())
            )
            profile = await asyncio.to_thread(check_table, data, drop.format)
        except (BadUpload, UploadTooLarge) as exc:
            await bus.publish_bytes(
                subjects.dead_letter(subjects.DATASETS_UPLOADED),
                json.dumps(record).encode(),
                headers={"Fermion-Reason": str(exc), "Fermion-Deliveries": "1"},
            )
            log.error("dead-lettered a dropped file: %s", exc)
            outcomes.append(f"refused {key}: {exc}")
            continue
        stored = await asyncio.to_thread(datasets.put, drop.tenant, drop.name, data, drop.format)
        if profile is not None:
            await asyncio.to_thread(datasets.put_profile, stored, profile.model_dump_json().encode())
        ref = DatasetRef(name=drop.name, sha256=stored.sha256, uri=stored.uri, format=drop.format, size=stored.size)
        await bus.publish(
            DatasetUploaded(id=upload_id(drop.tenant, drop.name, stored.sha256), tenant=drop.tenant, data=ref)
        )
        log.info("dataset %s from s3 %s (%s)", drop.name, key, stored.sha256[:12])
        outcomes.append(f"stored {key} as {stored.key}")
        if drop.model is not None:
            outcomes.append(await _score(drop, stored.sha256, datasets, bus, registry))
    return outcomes


async def _score(drop: Drop, sha256: str, datasets: DatasetStore, bus: Bus, registry: Registry | None) -> str:
    """Request the scoring a `score/` drop asks for; a refusal is dead-lettered like a bad drop."""
    assert drop.model is not None
    if registry is None:
        raise ValueError("a scoring drop needs the registry")
    spec = ScoringSpec(model=drop.model, dataset=DatasetSelector(name=drop.name, sha256=sha256))
    job = derive_id("score", re.sub(r"[^A-Za-z0-9._-]", "-", drop.model), sha256[:40])
    try:
        accepted = await request_scoring(bus, registry, datasets, drop.tenant, spec, job)
    except (BadRequest, RegistryError) as exc:
        reason = f"{drop.key!r} was stored but cannot be scored with {drop.model}: {exc}"
        await bus.publish_bytes(
            subjects.dead_letter(subjects.SCORING_REQUESTED),
            spec.model_dump_json().encode(),
            headers={"Fermion-Reason": reason, "Fermion-Deliveries": "1"},
        )
        log.error("%s", reason)
        return f"refused scoring {drop.key}: {exc}"
    log.info("scoring drop %s: job %s with %s:%d", drop.key, job, accepted.model_name, accepted.version)
    return f"scoring {drop.key} as job {job}"


async def _ingest_event(event: dict[str, Any], settings: IngestSettings) -> list[str]:
    bus = await Bus.from_settings(settings, name="fermion-s3-ingest")
    try:
        registry = open_registry(settings)
        return await ingest_records(s3_records(event), DatasetStore(registry.store), bus, registry)
    finally:
        await bus.close()


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """AWS Lambda entry point for S3 (or SQS-wrapped S3) notifications."""
    return {"outcomes": asyncio.run(_ingest_event(event, get_settings()))}


async def bridge(queue_url: str, settings: IngestSettings, stop: asyncio.Event, *, endpoint_url: str | None) -> None:
    """Drain an SQS queue of S3 notifications into `ingest_records` until `stop` is set."""
    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=settings.s3_region or "us-east-1")
    registry = open_registry(settings)
    datasets = DatasetStore(registry.store)
    bus = await Bus.from_settings(settings, name="fermion-s3-bridge")
    log.info("draining %s", queue_url)
    try:
        while not stop.is_set():
            reply = await asyncio.to_thread(
                sqs.receive_message, QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in reply.get("Messages", []):
                try:
                    await ingest_records(s3_records(json.loads(message["Body"])), datasets, bus, registry)
                except (StoreError, ValueError, KeyError) as exc:
                    log.warning("notification left for redelivery: %s", exc)
                    continue
                await asyncio.to_thread(sqs.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    finally:
        await bus.close()
        sqs.close()


def main() -> None:
    """`python -m fermion.functions.ingest.s3_events --queue-url URL [--endpoint-url URL]`."""
    parser = argparse.ArgumentParser(description="Drain S3 notifications from SQS into datasets.uploaded")
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--endpoint-url", default=None, help="SQS endpoint (LocalStack)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        await bridge(args.queue_url, get_settings(), stop_on_signals(), endpoint_url=args.endpoint_url)

    asyncio.run(run())


if __name__ == "__main__":
    main()
