"""Per-tenant usage counters in the object store (`usage/{tenant}/{day}.json`), for quotas.

A counter moves by compare-and-swap, so concurrent replicas never lose an increment, and a charge
that would pass the limit is refused before it is made.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .backends import ObjectStore
from .errors import ObjectNotFound, PreconditionFailed, RegistryError
from .names import check_name


class UsageLimitReached(RegistryError):
    """A charge would take a tenant past its limit."""


class Usage:
    """Daily counters per tenant."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @staticmethod
    def _key(tenant: str, day: str) -> str:
        return f"usage/{check_name('tenant', tenant)}/{day}.json"

    def charge(self, tenant: str, counter: str, amount: int, *, limit: int, setting: str) -> int:
        """Add `amount` to today's `counter`; UsageLimitReached (naming `setting`) if it would pass `limit`."""
        key = self._key(tenant, datetime.now(UTC).strftime("%Y-%m-%d"))
        for _ in range(50):
            condition: dict[str, Any]
            try:
                raw, etag = self.store.get(key)
                counts, condition = json.loads(raw), {"if_match": etag}
            except ObjectNotFound:
                counts, condition = {}, {"if_none_match": True}  # the day's first charge creates it
            total = int(counts.get(counter, 0)) + amount
            if total > limit:
                raise UsageLimitReached(
                    f"tenant {tenant!r} would pass its daily {counter} limit of {limit} "
                    f"({counts.get(counter, 0)} used, {amount} more asked; setting {setting})"
                )
            counts[counter] = total
            try:
                self.store.put(key, json.dumps(counts).encode(), **condition)
            except PreconditionFailed:
                continue
            return total
        raise RegistryError(f"usage counter {key} kept changing under us")
