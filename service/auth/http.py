"""The HTTP side of authentication: the `Authorization` header in, a Principal (or a 401/403) out.

`app.state.security` holds the app's Authenticator and Auditor; FastAPI routes declare
`Depends(needs("scope"))` (which also puts the bearer scheme in the OpenAPI document), plain
Starlette routes await `authorize(request, "scope")`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fermion.model_store import Scope

from .authenticator import Principal
from .errors import Forbidden
from .state import SecurityState

__all__ = ["SecurityState", "also_needs", "authorize", "needs", "refused", "tenant_of"]

bearer = HTTPBearer(auto_error=False, scheme_name="APIKey", description="an API key: `Authorization: Bearer fmn_...`")


async def authorize(request: Request, scope: Scope, *, tenant: str | None = None) -> Principal:
    """The caller if it may use `scope` (on `tenant`, when the request names one); else 401/403."""
    security: SecurityState = request.app.state.security
    return await security.authorize(
        request.headers.get("authorization"), scope, f"{request.method} {request.url.path}", tenant=tenant
    )


def tenant_of(request: Request, principal: Principal, named: str | None) -> str:
    """The tenant the request acts on (the key's, or one an admin key names); audited 403 otherwise."""
    try:
        return principal.tenant_for(named)
    except Forbidden as exc:
        refused(request, principal, exc)
        raise


def also_needs(request: Request, principal: Principal, scope: Scope) -> None:
    """An extra scope a request needs for what it asks (a sweep's gate needs `promote`); audited 403."""
    try:
        principal.require(scope)
    except Forbidden as exc:
        refused(request, principal, exc)
        raise


def refused(request: Request, principal: Principal, exc: Exception) -> None:
    """Audit a request refused to a known key."""
    security: SecurityState = request.app.state.security
    security.refused(principal, f"{request.method} {request.url.path}", exc)


def needs(scope: Scope) -> Any:
    """A FastAPI dependency: the Principal, if it has `scope`."""

    async def caller(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        return await authorize(request, scope)

    return Depends(caller)
