"""Object-store backends, chosen by URL: `file:///dir` or `s3://bucket[/prefix]`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import StoreUnavailable
from .base import ObjectStore
from .local import LocalDirStore

SCHEMES = ("file", "s3")


def open_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_sse: str = "AES256",
    s3_kms_key_id: str | None = None,
    s3_multipart_threshold: int | None = None,
    s3_multipart_part_size: int | None = None,
    s3_multipart_concurrency: int | None = None,
) -> ObjectStore:
    """The object store at `url`; a plain path is a local directory."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalDirStore(Path(unquote(parsed.path if parsed.scheme else url)).expanduser())
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreUnavailable(f"store URL {url!r} names no bucket: use s3://bucket[/prefix]")
        from . import s3

        return s3.S3Store(
            parsed.netloc,
            parsed.path,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            sse=s3_sse,
            kms_key_id=s3_kms_key_id,
            multipart_threshold=s3_multipart_threshold or s3.MULTIPART_THRESHOLD,
            multipart_part_size=s3_multipart_part_size or s3.MULTIPART_PART_SIZE,
            multipart_concurrency=s3_multipart_concurrency or s3.MULTIPART_CONCURRENCY,
        )
    raise StoreUnavailable(f"unsupported store URL {url!r}: the scheme must be one of {', '.join(SCHEMES)}")


__all__ = ["LocalDirStore", "ObjectStore", "open_store"]
