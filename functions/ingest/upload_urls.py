"""Presigned uploads: a dataset too large for a request body goes straight to the bucket.

Lambda takes at most 6 MB per request (about 4.5 MB of file once multipart-encoded), so a larger
dataset is PUT to a presigned S3 URL under `incoming/{tenant}/{name}.{format}`; the bucket's drop
handler (s3_events.py) then validates, stores and announces it like an HTTP upload. The URL is
signed for exactly the declared size, which is charged against the tenant's daily quota here.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from fermion.events.envelope import NAME_PATTERN, Name
from fermion.model_store import DatasetFormat
from fermion.service.auth import Principal, QuotaExceeded
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import Datasets, Settings
from .errors import AUTHENTICATED, NotSigned, UploadTooLarge
from .quotas import charge_upload
from .s3_events import INCOMING

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
EXPIRES_S = 900
DatasetName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="the dataset's name")]


class UploadUrlSpec(BaseModel):
    """POST /v1/datasets/{name}/upload-url."""

    model_config = ConfigDict(extra="forbid")

    format: DatasetFormat
    size: int = Field(gt=0, description="the file's exact size in bytes: the URL takes exactly this many")
    tenant: Name | None = Field(default=None, description="default: the key's tenant (another needs an admin key)")


class UploadUrl(BaseModel):
    """201: where to PUT the file, with which headers, until when; `key` is the drop the bucket announces."""

    url: str
    method: str = "PUT"
    headers: dict[str, str]
    key: str
    expires_in: int


@router.post(
    "/{name}/upload-url",
    status_code=201,
    responses=error_responses(*AUTHENTICATED, UploadTooLarge, QuotaExceeded, NotSigned),
)
async def upload_url(
    request: Request,
    name: DatasetName,
    spec: UploadUrlSpec,
    datasets: Datasets,
    settings: Settings,
    caller: Principal = needs("upload"),
) -> UploadUrl:
    """A presigned S3 PUT for a dataset of `size` bytes; the bucket's drop handler announces it."""
    tenant = tenant_of(request, caller, spec.tenant)
    presign = getattr(datasets.store, "presigned_put", None)
    if presign is None:
        raise NotSigned(
            "presigned uploads need the S3 store (FERMION_STORE_URL=s3://...); upload with POST /v1/datasets"
        )
    if spec.size > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"{spec.size} bytes exceed the limit of {settings.max_upload_bytes} (FERMION_MAX_UPLOAD_BYTES)"
        )
    await asyncio.to_thread(charge_upload, datasets.store, tenant, spec.size, settings)
    key = f"{INCOMING}{tenant}/{name}.{spec.format}"
    signed = presign(key, size=spec.size, expires_s=EXPIRES_S)
    return UploadUrl(url=signed["url"], headers=signed["headers"], key=key, expires_in=EXPIRES_S)
