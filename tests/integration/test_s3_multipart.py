"""Large objects go to S3 in parts, stay create-only, and a failed upload leaves no parts behind.

On LocalStack, with the threshold lowered to 6 MiB and S3's smallest part (5 MiB), a 12 MiB object
is three parts. Faults are injected with botocore's `before-call` hook on the store's own client:
the parts before the fault really reach LocalStack, so the abort has something to remove.
"""

from __future__ import annotations

import os
import types
import uuid
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from pydantic import ValidationError

from fermion.infra.localstack import LocalStack
from fermion.model_store import PreconditionFailed, StoreFull, StoreSettings, StoreUnavailable, open_registry
from fermion.model_store.backends.s3 import S3Store
from tests.helpers import s3_client

pytestmark = pytest.mark.integration
PART = 5 << 20
BIG = 12 << 20  # parts of 5, 5 and 2 MiB


@pytest.fixture
def store(localstack: LocalStack) -> S3Store:
    """A fresh bucket whose store uploads objects of 6 MiB and more in 5 MiB parts, one at a time."""
    client = s3_client(localstack.endpoint_url)
    bucket = f"fermion-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(
        bucket, "reg", client=client, multipart_threshold=6 << 20, multipart_part_size=PART, multipart_concurrency=1
    )


def _uploads_in_progress(store: S3Store) -> list[dict[str, Any]]:
    return list(store._s3.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def test_a_large_object_goes_in_parts_and_round_trips(store: S3Store) -> None:
    data = os.urandom(BIG)
    etag = store.put("models/big.onnx", data, if_none_match=True)
    assert etag.strip('"').endswith("-3")  # S3's ETag of a three-part upload
    assert store.get("models/big.onnx") == (data, etag)
    assert store._s3.head_object(Bucket=store.bucket, Key="reg/models/big.onnx", PartNumber=1)["PartsCount"] == 3
    small = store.put("models/small.json", b"{}", if_none_match=True)
    assert "-" not in small  # under the threshold: one PutObject
    assert _uploads_in_progress(store) == []


def test_parts_in_flight_at_once_round_trip(store: S3Store) -> None:
    parallel = S3Store(store.bucket, "reg", client=store._s3, multipart_threshold=PART, multipart_part_size=PART)
    data = os.urandom(4 * PART + 1)
    assert parallel.put("big", data).strip('"').endswith("-5")
    assert parallel.get("big")[0] == data


def test_a_second_create_only_multipart_write_is_already_exists_and_the_first_stays(store: S3Store) -> None:
    first = os.urandom(BIG)
    etag = store.put("models/m/versions/1/model.onnx", first, if_none_match=True)
    with pytest.raises(PreconditionFailed, match=r"already exists.*multipart upload of \d+ bytes aborted"):
        store.put("models/m/versions/1/model.onnx", os.urandom(BIG), if_none_match=True)
    assert store.get("models/m/versions/1/model.onnx") == (first, etag)
    assert _uploads_in_progress(store) == []


def test_a_create_only_race_lost_at_completion_is_already_exists_and_aborted(store: S3Store) -> None:
    racer = b"the other writer's claim"

    def another_writer_completes_first(**_: Any) -> None:
        store._s3.put_object(Bucket=store.bucket, Key="reg/claim", Body=racer)

    store._s3.meta.events.register_first("before-call.s3.CompleteMultipartUpload", another_writer_completes_first)
    try:
        with pytest.raises(PreconditionFailed, match="already exists"):
            store.put("claim", os.urandom(BIG), if_none_match=True)
    finally:
        store._s3.meta.events.unregister("before-call.s3.CompleteMultipartUpload", another_writer_completes_first)
    assert store.get("claim")[0] == racer
    assert _uploads_in_progress(store) == []


def test_a_multipart_compare_and_swap_on_a_stale_etag_fails(store: S3Store) -> None:
    etag = store.put("alias", b"v1")
    store.put("alias", b"v2", if_match=etag)
    with pytest.raises(PreconditionFailed, match="conditional write lost"):
        store.put("alias", os.urandom(BIG), if_match=etag)
    assert store.get("alias")[0] == b"v2"
    assert _uploads_in_progress(store) == []


def _full(**_: Any) -> tuple[Any, dict[str, Any]]:
    """MinIO's answer when its drives are full: a 507 with XMinioStorageFull."""
    error = {"Code": "XMinioStorageFull", "Message": "Storage backend has reached its minimum free drive threshold."}
    return types.SimpleNamespace(status_code=507), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 507}}


def _dropped(**_: Any) -> None:
    raise botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1")


def _bug(**_: Any) -> None:
    raise RuntimeError("not a store error")


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (_full, StoreFull, "no room to write big.*XMinioStorageFull.*aborted"),
        (_dropped, StoreUnavailable, "unreachable.*aborted"),
        (_bug, RuntimeError, "not a store error"),  # not ours to rename, but aborted all the same
    ],
)
def test_a_failure_mid_upload_aborts_it_and_is_a_named_error(
    store: S3Store, fault: Any, error: type[Exception], message: str
) -> None:
    sent: list[int] = []

    def second_part_fails(params: dict[str, Any], **kwargs: Any) -> Any:
        number = int(params["query_string"]["partNumber"])
        if number == 2:
            return fault(params=params, **kwargs)
        sent.append(number)
        return None

    store._s3.meta.events.register_first("before-call.s3.UploadPart", second_part_fails)
    try:
        with pytest.raises(error, match=message):
            store.put("big", os.urandom(BIG), if_none_match=True)
    finally:
        store._s3.meta.events.unregister("before-call.s3.UploadPart", second_part_fails)
    # Part 1 reached the store before the fault (and part 3 may have, before the cancel): the abort removed them.
    assert sent[0] == 1
    assert _uploads_in_progress(store) == []
    assert list(store.list("")) == []
    store.put("big", b"the next write", if_none_match=True)  # nothing of the failed one is in the way


def test_a_part_smaller_than_s3_allows_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 5242880 bytes"):
        S3Store("b", client=object(), multipart_part_size=1 << 20)


def test_the_multipart_settings_reach_the_store(tmp_path: Path) -> None:
    settings = StoreSettings(
        home=tmp_path,
        store_url="s3://bucket/prefix",
        s3_region="us-east-1",
        s3_multipart_threshold=100 << 20,
        s3_multipart_part_size=8 << 20,
        s3_multipart_concurrency=2,
    )
    store = open_registry(settings).store
    assert isinstance(store, S3Store)
    store.close()
    assert (store._multipart_threshold, store._multipart_part_size, store._multipart_concurrency) == (
        100 << 20,
        8 << 20,
        2,
    )
    with pytest.raises(ValidationError, match="s3_multipart_part_size"):
        StoreSettings(home=tmp_path, s3_multipart_part_size=1 << 20)
