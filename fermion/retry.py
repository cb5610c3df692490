"""Retrying writes safely: one Idempotency-Key per logical operation, reused on every attempt.

A write whose answer never arrived (a dropped connection, a timeout) or that the server could not
settle (503: nothing accepted; 504: it may have been accepted) is sent again with the same key, so
the server makes it the same job rather than a second one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

HEADER = "Idempotency-Key"
RETRYABLE_STATUSES = frozenset({502, 503, 504})


def new_key() -> str:
    """A fresh key for one logical operation."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a write is retried; `on_retry(attempt, why)` hears each retry."""

    attempts: int = 6
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    on_retry: Callable[[int, str], None] | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped."""
        return float(min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s))


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    key: str,
    retry: Retry,
    rewind: Callable[[], object] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a write with `key`, retrying what may not have been done; the last answer (or error) stands.

    `rewind` is called before every attempt after the first (to seek an uploaded file back to 0).
    """
    headers = {**kwargs.pop("headers", {}), HEADER: key}
    for attempt in range(1, retry.attempts + 1):
        if attempt > 1 and rewind is not None:
            rewind()
        try:
            response = http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            if attempt == retry.attempts:
                raise
            why = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code not in RETRYABLE_STATUSES or attempt == retry.attempts:
                return response
            why = f"{response.status_code}: {response.text[:200]}"
        if retry.on_retry is not None:
            retry.on_retry(attempt, why)
        time.sleep(retry.delay(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")
