"""Inference errors, each with the HTTP status it maps to; the one place statuses are known.

::

    InferenceError (500)
    ├── BadRequest (400)          the request is malformed: shape, datatype, tensor names, JSON
    ├── PayloadTooLarge (413)     the body is over the configured limit
    ├── ModelNotFound (404)       no such model, version or alias
    └── ModelUnavailable (503)    the model exists but cannot serve: failed integrity check, no GPU

`TRANSLATIONS` says which registry error a client sees as which of these.
"""

from __future__ import annotations

from fermion.model_store import IntegrityError, InvalidName, NotFound, RegistryError, StoreError
from fermion.service.responses import HTTPError, Translation


class InferenceError(HTTPError):
    """Base of every inference error; an unexpected one is a 500 with a request id."""


class BadRequest(InferenceError):
    """400: the request does not fit the model or the protocol."""

    status = 400


class PayloadTooLarge(InferenceError):
    """413: the body is over `max_body_bytes`."""

    status = 413


class ModelNotFound(InferenceError):
    """404: no such model, version or alias."""

    status = 404


class ModelUnavailable(InferenceError):
    """503: the model cannot be served here right now."""

    status = 503


TRANSLATIONS = (
    Translation(InvalidName, BadRequest),
    Translation(NotFound, ModelNotFound),
    Translation(IntegrityError, ModelUnavailable, "model refused: {exc}"),
    Translation(StoreError, ModelUnavailable, "model store unavailable: {exc}"),
    Translation(RegistryError, ModelUnavailable, "model registry error: {exc}"),
)
