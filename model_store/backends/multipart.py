"""Multipart uploads to S3 that keep create-only and compare-and-swap, and leave no parts behind.

The multipart calls are ours (create_multipart_upload, upload_part, complete_multipart_upload),
not s3transfer's `TransferManager`/`upload_fileobj`: s3transfer 0.19 refuses `IfNoneMatch` and
`IfMatch` in `ExtraArgs` (`TransferManager.ALLOWED_UPLOAD_ARGS`) and would not pass them on if it
took them (`UploadSubmissionTask.COMPLETE_MULTIPART_ARGS`), so an upload through it would overwrite
a version or a claim that another writer made first. The condition belongs on
CompleteMultipartUpload, where S3 decides atomically whether the object comes to exist: a lost
create-only race answers 412 PreconditionFailed (409 ConditionalRequestConflict while another
conditional write of the key is in flight). From s3transfer we take what is not about the
condition: `ChunksizeAdjuster` (S3's 5 MiB..5 GiB part size and 10,000 parts) and its choice of
CRC32 part checksums.

Whatever fails — a part, the completion, a lost race, an interrupt — the upload is aborted once no
part is in flight any more, so no orphan parts stay billed in the bucket. An abort that itself
fails (the network is gone) is logged with the upload id; a bucket lifecycle rule
(AbortIncompleteMultipartUpload) is the backstop for that case.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import botocore.exceptions
from s3transfer.utils import ChunksizeAdjuster

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 << 20
"""S3's smallest part (all but the last); smaller ones fail at completion with EntityTooSmall."""

_CHECKSUM = "CRC32"  # s3transfer's default algorithm for multipart uploads


def upload(
    client: Any,
    bucket: str,
    key: str,
    data: bytes,
    extra: Mapping[str, str],
    *,
    condition: Mapping[str, str],
    part_size: int,
    concurrency: int,
) -> str:
    """Upload `data` in parts and return the object's ETag; raises botocore's errors after aborting.

    `extra` goes to CreateMultipartUpload (encryption), `condition` (`IfNoneMatch`/`IfMatch`) to
    CompleteMultipartUpload. At most `concurrency` parts are in flight, each a copy of its slice of
    `data`, so the upload holds at most `concurrency * part_size` bytes beyond `data` itself.
    """
    size = ChunksizeAdjuster().adjust_chunksize(part_size, len(data))
    # As s3transfer does: part checksums unless the client was told to send them only when required
    # (some S3 APIs do not support them); a botocore before 1.36 has no such setting and sends none.
    checksum = getattr(client.meta.config, "request_checksum_calculation", None) == "when_supported"
    checksum_args = {"ChecksumAlgorithm": _CHECKSUM} if checksum else {}
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, **extra, **checksum_args)["UploadId"]

    def send(number: int) -> dict[str, Any]:
        body = data[(number - 1) * size : number * size]
        out = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **checksum_args
        )
        part = {"PartNumber": number, "ETag": out["ETag"]}
        if checksum and f"Checksum{_CHECKSUM}" in out:
            part[f"Checksum{_CHECKSUM}"] = out[f"Checksum{_CHECKSUM}"]
        return part

    try:
        parts = _send_all(send, (len(data) + size - 1) // size, concurrency)
        out = client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **condition
        )
    except BaseException:
        abort(client, bucket, key, upload_id)
        raise
    return str(out["ETag"])


def _send_all(send: Callable[[int], dict[str, Any]], count: int, concurrency: int) -> list[dict[str, Any]]:
    """Every part's record in part order; the first failure cancels the parts not yet started.

    Leaving the pool waits for the parts already in flight, so an abort that follows finds none
    still arriving (a part that lands after the abort would be an orphan).
    """
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, count)), thread_name_prefix="s3-part") as pool:
        futures: list[Future[dict[str, Any]]] = [pool.submit(send, n) for n in range(1, count + 1)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                if (exc := future.exception()) is not None:
                    raise exc
            return [f.result() for f in futures]
        finally:
            for future in futures:
                future.cancel()


def abort(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload, dropping its parts; a failure to abort is logged, not raised."""
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        log.warning(
            "could not abort multipart upload %s of s3://%s/%s (%s): its parts stay until a lifecycle rule "
            "(AbortIncompleteMultipartUpload) removes them",
            upload_id,
            bucket,
            key,
            exc,
        )
