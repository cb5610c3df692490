"""Authentication and authorisation errors, with the HTTP status each maps to.

::

    HTTPError
    ├── Unauthorized (401)    no key, a malformed, unknown, expired or revoked key
    ├── Forbidden (403)       a known key without the scope, or naming a tenant that is not its own
    └── QuotaExceeded (429)   the tenant is at a limit; the message names it and its setting
"""

from __future__ import annotations

from typing import ClassVar

from ..responses import HTTPError


class Unauthorized(HTTPError):
    """401: no usable API key (send `Authorization: Bearer <key>`)."""

    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="fermion"'}


class Forbidden(HTTPError):
    """403: the key may not do this."""

    status = 403


class QuotaExceeded(HTTPError):
    """429: the tenant is at one of its quotas."""

    status = 429
