"""Any S3 API (AWS, LocalStack, MinIO) as an object store, through boto3.

Create-only is `If-None-Match: *` and compare-and-swap is `If-Match: <etag>`; both answer
412 (or 409 for a concurrent conditional write in flight) when another writer got there first.
Objects from `multipart_threshold` bytes up go in parts (multipart.py), with the same condition on
the completion; smaller ones in one PutObject.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from ..errors import ObjectNotFound, PreconditionFailed, StoreError, StoreFull, StoreUnavailable
from . import multipart

_CHUNK = 1 << 20
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_PART_SIZE = 16 << 20
MULTIPART_CONCURRENCY = 4
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# No room: MinIO's full drives (507) and bucket quota, Ceph RGW's user or bucket quota (a 403).
_FULL_CODES = {"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded", "507"}


class S3Store:
    """Objects under `s3://bucket/prefix`."""

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_part_size: int = MULTIPART_PART_SIZE,
        multipart_concurrency: int = MULTIPART_CONCURRENCY,
    ) -> None:
        if multipart_part_size < multipart.MIN_PART_SIZE:
            raise ValueError(
                f"multipart_part_size must be at least {multipart.MIN_PART_SIZE} bytes (S3's smallest part)"
            )
        if multipart_concurrency < 1:
            raise ValueError("multipart_concurrency must be at least 1")
        self.bucket = bucket
        self._multipart_threshold = multipart_threshold
        self._multipart_part_size = multipart_part_size
        self._multipart_concurrency = multipart_concurrency
        # Server-side encryption of every object we write: SSE-S3 by default, SSE-KMS by key id.
        self._sse: dict[str, str] = {}
        if sse != "none":
            self._sse["ServerSideEncryption"] = sse
        if sse == "aws:kms" and kms_key_id:
            self._sse["SSEKMSKeyId"] = kms_key_id
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # A session of its own: boto3's default session is shared, caches credentials, and is not thread-safe.
        self._s3 = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 4, "mode": "standard"},
                connect_timeout=3,
                read_timeout=30,
                signature_version="s3v4",  # presigned PUTs sign their length (SigV2 cannot)
            ),
        )

    def close(self) -> None:
        """Close the client's pooled connections (a dropped boto3 client leaves its sockets to the collector)."""
        self._s3.close()

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _fail(self, exc: Exception, key: str, *, create_only: bool = False) -> StoreError:
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in _FULL_CODES or status == "507":
                return StoreFull(f"no room to write {key} in {self.url}: {code} (the store's disk or quota is full)")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "403"):
                return StoreUnavailable(f"{self.url}: {code}: {exc}")
            if code == "NoSuchUpload":  # a 404, but about the multipart upload (aborted under us), not the key
                return StoreError(f"{self.url}/{key}: the multipart upload vanished: {exc}")
            if code in _MISSING_CODES or status == "404":
                return ObjectNotFound(key)
            if code in _CONFLICT_CODES or status in ("412", "409"):
                if create_only:
                    return PreconditionFailed(
                        f"{key} already exists: a create-only write lost to another writer ({code})"
                    )
                return PreconditionFailed(f"{key}: conditional write lost ({code})")
            return StoreError(f"{self.url}/{key}: {code}: {exc}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StoreUnavailable(f"{self.url}: no AWS credentials found ({exc})")
        return StoreUnavailable(f"{self.url} unreachable: {exc}")

    def get(self, key: str) -> tuple[bytes, str]:
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            return obj["Body"].read(), obj["ETag"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        condition: dict[str, str] = {}
        if if_none_match:
            condition["IfNoneMatch"] = "*"
        elif if_match is not None:
            condition["IfMatch"] = if_match
        if len(data) >= self._multipart_threshold:
            return self._put_parts(key, data, condition)
        try:
            out = self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._sse, **condition)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key, create_only=if_none_match) from exc
        return str(out["ETag"])

    def _put_parts(self, key: str, data: bytes, condition: dict[str, str]) -> str:
        """A multipart put: aborted on any failure, so a failed write leaves no parts behind."""
        try:
            return multipart.upload(
                self._s3,
                self.bucket,
                self._key(key),
                data,
                self._sse,
                condition=condition,
                part_size=self._multipart_part_size,
                concurrency=self._multipart_concurrency,
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            err = self._fail(exc, key, create_only="IfNoneMatch" in condition)
            raise type(err)(f"{err} (multipart upload of {len(data)} bytes aborted)") from exc

    def size(self, key: str) -> int:
        try:
            return int(self._s3.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc

    def download(self, key: str, dest: Path) -> None:
        # One streamed GET: s3transfer's download_file adds a HEAD and a thread pool, which costs
        # more than it saves below ~100 MB (bench/registry_fetch.py).
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with open(dest, "wb") as f:
                for chunk in body.iter_chunks(_CHUNK):
                    f.write(chunk)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc

    def list(self, prefix: str) -> Iterator[str]:
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, prefix) from exc

    def children(self, prefix: str) -> builtins.list[str]:  # `list` is a method here
        names: set[str] = set()
        full = self._key(prefix)
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full, Delimiter="/"
            ):
                names.update(p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(full) :] for o in page.get("Contents", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, prefix) from exc
        return sorted(n for n in names if n)

    def presigned_put(self, key: str, *, size: int, expires_s: int = 900) -> dict[str, object]:
        """A URL that lets anyone holding it PUT exactly `size` bytes at `key` until it expires (no AWS call)."""
        params: dict[str, object] = {"Bucket": self.bucket, "Key": self._key(key), "ContentLength": size, **self._sse}
        try:
            url = self._s3.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_s, HttpMethod="PUT")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc
        # The signed headers the PUT must carry as signed: its length and the server-side encryption.
        headers = {"Content-Length": str(size)}
        if "ServerSideEncryption" in self._sse:
            headers["x-amz-server-side-encryption"] = self._sse["ServerSideEncryption"]
        if "SSEKMSKeyId" in self._sse:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = self._sse["SSEKMSKeyId"]
        return {"url": url, "method": "PUT", "headers": headers, "expires_in": expires_s}

    def presigned_get(self, key: str, *, expires_s: int = 900) -> str:
        """A URL that lets anyone holding it GET the object at `key` until it expires (no AWS call)."""
        try:
            return str(
                self._s3.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
                )
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._fail(exc, key) from exc
