"""Who is calling, and what they may do: API keys with scopes, the tenant taken from the key.

Shared by the HTTP functions (ingest and inference); domain code below never sees a header.
"""

from typing import Any

from .audit import Auditor
from .authenticator import LOCAL, Authenticator, Principal
from .config import SecurityConfig
from .errors import Forbidden, QuotaExceeded, Unauthorized

__all__ = [
    "LOCAL",
    "Auditor",
    "Authenticator",
    "Forbidden",
    "Principal",
    "QuotaExceeded",
    "SecurityConfig",
    "SecuritySettings",
    "Unauthorized",
]


def __getattr__(name: str) -> Any:
    # SecuritySettings brings pydantic-settings with it, which the inference function never imports.
    if name == "SecuritySettings":
        from .settings import SecuritySettings

        return SecuritySettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
