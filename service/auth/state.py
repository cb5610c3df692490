"""What an app holds for authentication, and the check every route makes, without a web framework.

`http.py` is the FastAPI side of it (a dependency per scope, the bearer scheme in the OpenAPI
document); the inference function's infer routes, served without a framework, call `authorize`
here directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from fermion.model_store import Scope

from ..observability import logs
from .audit import Auditor
from .authenticator import Authenticator, Principal
from .errors import Forbidden


@dataclass(frozen=True)
class SecurityState:
    """What `app.state.security` holds."""

    authenticator: Authenticator
    auditor: Auditor

    async def authorize(
        self, authorization: str | None, scope: Scope, what: str, *, tenant: str | None = None
    ) -> Principal:
        """The caller if it may use `scope` (on `tenant`, when the request names one); else 401/403.

        `what` ("POST /path") names the request in the audit record of a refusal.
        """
        principal = await self.authenticator.principal(authorization)
        logs.bind(tenant=principal.tenant)  # every log line of this request carries it
        try:
            principal.require(scope)
            principal.tenant_for(tenant)
        except Forbidden as exc:
            self.refused(principal, what, exc)
            raise
        return principal

    def refused(self, principal: Principal, what: str, exc: Exception) -> None:
        """Audit a request refused to a known key."""
        self.auditor.record(principal, "request.refused", what, outcome="refused", reason=str(exc))
