"""The HTTP side of authentication: the `Authorization` header in, a Principal (or a 401/403) out.

`app.state.security` holds the app's Authenticator and Auditor; FastAPI routes declare
`Depends(needs("scope"))` (which also puts the bearer scheme in the OpenAPI document), plain
Starlette routes await `authorize(request, "scope")`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fermion.model_store import Scope

from ..telemetry import logs
from .audit import Auditor
from .authenticator import Authenticator, Principal
from .errors import Forbidden

bearer = HTTPBearer(auto_error=False, scheme_name="APIKey", description="an API key: `Authorization: Bearer fmn_...`")


@dataclass(frozen=True)
class SecurityState:
    """What `app.state.security` holds."""

    authenticator: Authenticator
    auditor: Auditor


async def authorize(request: Request, scope: Scope, *, tenant: str | None = None) -> Principal:
    """The caller if it may use `scope` (on `tenant`, when the request names one); else 401/403."""
    security: SecurityState = request.app.state.security
    principal = await security.authenticator.principal(request.headers.get("authorization"))
    logs.bind(tenant=principal.tenant)  # every log line of this request carries it
    try:
        principal.require(scope)
        principal.tenant_for(tenant)
    except Forbidden as exc:
        refused(request, principal, exc)
        raise
    return principal


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
    request.app.state.security.auditor.record(
        principal, "request.refused", f"{request.method} {request.url.path}", outcome="refused", reason=str(exc)
    )


def needs(scope: Scope) -> Any:
    """A FastAPI dependency: the Principal, if it has `scope`."""

    async def caller(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        return await authorize(request, scope)

    return Depends(caller)
