"""Datasets too large for one request, uploaded through a presigned S3 PUT that ingest issues.

Lambda takes at most 6 MB per request and API Gateway base64-encodes binary bodies, so a direct
upload to the Lambda ingest function stops near 4.5 MB of file. Above DIRECT_LIMIT the client asks
ingest for a URL (POST /v1/datasets/{name}/upload-url) and PUTs the file to S3 itself; the bucket's
drop handler stores and announces it (`datasets.uploaded`), a moment later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fermion.model_store import dataset_format, normal_name

DIRECT_LIMIT = 4 << 20
"""Bytes of file above which `Client.upload` goes through a presigned URL when the store allows it."""


class PutRefused(Exception):
    """S3 refused the PUT to a presigned URL (expired, or the file changed size since it was signed)."""


def upload(
    call: Callable[..., Any], ingest_url: str, tenant: dict[str, str], path: Path, name: str | None
) -> dict[str, Any]:
    """PUT `path` to the URL ingest signs for it (asked through `call`, the client's request); the
    dataset's name, format, size, sha256 and drop key."""
    fmt = dataset_format(path.suffix)
    if fmt is None:
        raise ValueError(f"unsupported file {path.name!r}: upload an .npz, .csv, .zip or .tar")
    dataset = name.lower() if name else normal_name(path.stem)
    size = path.stat().st_size
    body = {"format": fmt, "size": size, **tenant}
    signed = call("POST", f"{ingest_url}/v1/datasets/{dataset}/upload-url", json=body)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        f.seek(0)
        # No Authorization header: the URL carries its own signature (S3 refuses both at once).
        with httpx.Client(timeout=httpx.Timeout(60.0, write=None)) as s3:
            put = s3.request(signed["method"], signed["url"], content=f, headers=signed["headers"])
    if put.status_code >= 300:
        raise PutRefused(f"PUT to the presigned URL → {put.status_code}: {put.text[:500]}")
    return {"name": dataset, "format": fmt, "size": size, "sha256": digest.hexdigest(), "key": signed["key"]}
