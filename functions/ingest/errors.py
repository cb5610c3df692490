"""Ingest errors, each with the HTTP status it maps to.

::

    IngestError (500)
    ├── BadUpload (400)         the file is not a dataset we can read
    ├── UploadTooLarge (413)
    ├── NotFound (404)          a training request names a dataset that is not stored
    └── Unavailable (503)       NATS or the object store cannot be reached: nothing was accepted
"""

from __future__ import annotations

from ..responses import HTTPError


class IngestError(HTTPError):
    """Base of every ingest error."""


class BadUpload(IngestError):
    """400: the upload is not a dataset we can read."""

    status = 400


class UploadTooLarge(IngestError):
    """413: the upload is over `max_upload_bytes`."""

    status = 413


class NotFound(IngestError):
    """404: the dataset a training request names is not stored."""

    status = 404


class Unavailable(IngestError):
    """503: NATS or the object store is unreachable; the request was not accepted."""

    status = 503
