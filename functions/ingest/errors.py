"""Ingest errors, each with the HTTP status it maps to.

::

    IngestError (500)
    ├── BadUpload (400)         the file is not a dataset we can read
    ├── UploadTooLarge (413)
    ├── NotFound (404)          no such dataset, model, version or alias
    ├── Conflict (409)          an alias moved under a conditional update
    └── Unavailable (503)       NATS or the object store cannot be reached: nothing was accepted
"""

from __future__ import annotations

from fermion.model_store import AliasConflict, InvalidName, StoreError
from fermion.model_store import NotFound as RegistryNotFound

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


class Conflict(IngestError):
    """409: an alias moved under a conditional update, or there is nothing to roll back to."""

    status = 409


def translate(exc: Exception) -> Exception:
    """Registry errors as the ingest error a client should see."""
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, InvalidName):
        return BadUpload(str(exc))
    if isinstance(exc, RegistryNotFound):
        return NotFound(str(exc))
    if isinstance(exc, AliasConflict):
        return Conflict(str(exc))
    if isinstance(exc, StoreError):
        return Unavailable(f"object store unavailable: {exc}")
    return exc  # not ours to explain: the catch-all answers 500 with a request id and logs it
