"""Datasets of pictures at the door: a zip or tar archive checked by fermion.imaging before it is stored.

Checking decodes every picture, so it runs in a worker thread (Pillow and zlib release the GIL
while they work): the event loop, and with it `/healthz` and other uploads, stays responsive.
"""

from __future__ import annotations

from fermion.imaging import ImageError, Limits, check_archive

from .errors import BadUpload
from .settings import IngestSettings


def image_limits(settings: IngestSettings) -> Limits:
    """The archive limits the settings set."""
    return Limits(
        max_files=settings.max_pictures,
        max_file_bytes=settings.max_picture_bytes,
        max_total_bytes=settings.max_archive_bytes,
        max_pixels=settings.max_picture_pixels,
    )


def validate_pictures(data: bytes, fmt: str, limits: Limits) -> dict[str, int]:
    """Refuse an archive that is not a dataset of pictures, naming the file and the problem."""
    try:
        return check_archive(data, fmt, limits)
    except ImageError as exc:
        raise BadUpload(f"not a dataset of pictures: {exc}") from exc
