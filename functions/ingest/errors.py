"""Ingest errors, each with the HTTP status it maps to.

::

    IngestError (500)
    ├── BadRequest (400)        a request that names something invalid or ambiguous
    │   └── BadUpload (400)     the file is not a dataset we can read
    ├── UploadTooLarge (413)
    ├── NotFound (404)          no such dataset, model, version or alias
    ├── Conflict (409)          an alias moved under a conditional update
    ├── NotBuilt (501)          this deployment cannot build what was asked (edge bundles without torch)
    ├── NotSigned (409)         this store cannot sign an upload URL (a local directory): upload directly
    ├── Unavailable (503)       NATS or the object store cannot be reached: nothing was accepted;
    │                           or a version failed its integrity checks (signature, place, checksums)
    ├── InsufficientStorage (507)  the object store is full: nothing was accepted
    └── OutcomeUnknown (504)    the event went out but was not confirmed: it may have been accepted

A request that does not match the OpenAPI document (a parameter or field missing, malformed or
out of range) is a 422 (`VALIDATION_STATUS`), answered by `service/responses.py`.

`TRANSLATIONS` says which registry or bus error a client sees as which of these; `AUTHENTICATED`
and the routes' `responses=` (through `error_responses`) say which of them a route can answer.
"""

from __future__ import annotations

from fermion.events import BusError, PublishUnconfirmed
from fermion.model_store import (
    AliasConflict,
    AmbiguousDataset,
    DatasetNotFound,
    IntegrityError,
    InvalidName,
    RegistryError,
    StoreError,
    StoreFull,
    UsageLimitReached,
)
from fermion.model_store import NotFound as RegistryNotFound
from fermion.service.auth import Forbidden, QuotaExceeded, Unauthorized
from fermion.service.responses import HTTPError, Translation


class IngestError(HTTPError):
    """Base of every ingest error."""


class BadRequest(IngestError):
    """400: the request names something invalid or ambiguous."""

    status = 400


class BadUpload(BadRequest):
    """400: the upload is not a dataset we can read."""


class UploadTooLarge(IngestError):
    """413: the upload is over `max_upload_bytes`."""

    status = 413


class NotFound(IngestError):
    """404: no such dataset, model, version or alias."""

    status = 404


class Unavailable(IngestError):
    """503: NATS or the object store is unreachable; the request was not accepted."""

    status = 503


class InsufficientStorage(IngestError):
    """507: the object store has no room (a full disk, a quota); nothing was kept."""

    status = 507


class OutcomeUnknown(IngestError):
    """504: the event was sent but JetStream did not confirm it in time; it may have been accepted.

    Retrying with the same Idempotency-Key is safe: it is the same event.
    """

    status = 504


class Conflict(IngestError):
    """409: an alias moved under a conditional update, or there is nothing to roll back to."""

    status = 409


class NotSigned(IngestError):
    """409: the store cannot sign a presigned upload (a local directory); POST the file instead."""

    status = 409


class NotBuilt(IngestError):
    """501: this deployment cannot build it (an edge bundle needs torch beside the ingest function)."""

    status = 501


VALIDATION_STATUS = 422

# What every route that asks for a key can answer: no key or a bad one, a key without the scope or
# naming another tenant, and the key store (on the object store) unreachable.
AUTHENTICATED = (Unauthorized, Forbidden, Unavailable)

TRANSLATIONS = (
    Translation(UsageLimitReached, QuotaExceeded),
    Translation(InvalidName, BadRequest),
    Translation(AmbiguousDataset, BadRequest),
    Translation(DatasetNotFound, NotFound, "{exc}; upload it first (POST /v1/datasets)"),
    Translation(RegistryNotFound, NotFound),
    Translation(AliasConflict, Conflict),
    Translation(StoreFull, InsufficientStorage, "the object store is full, nothing was accepted: {exc}"),
    Translation(IntegrityError, Unavailable, "model refused: {exc}"),
    Translation(StoreError, Unavailable, "object store unavailable: {exc}"),
    Translation(RegistryError, Unavailable, "model registry error: {exc}"),
    Translation(
        PublishUnconfirmed,
        OutcomeUnknown,
        "the event bus did not confirm the request in time; it may have been accepted: "
        "retry with the same Idempotency-Key ({exc})",
    ),
    Translation(BusError, Unavailable, "event bus unavailable, nothing was accepted: {exc}"),
)
