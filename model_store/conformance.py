"""Does an object store honour conditional writes? The registry refuses to write to one that does not.

Immutability and race-free version numbers rest on `If-None-Match: *` (create-only) and aliases
on `If-Match` (compare-and-swap). A store that silently ignores either would let two trainers
overwrite each other's versions, so the first write through a registry probes both.
"""

from __future__ import annotations

import contextlib
import uuid

from .backends import ObjectStore
from .errors import PreconditionFailed, StoreError

PROBE_PREFIX = "_fermion/conformance/"


class StoreNotConformant(StoreError):
    """The store ignores conditional writes; writing a registry to it would corrupt it."""


def check_conditional_writes(store: ObjectStore) -> None:
    """Raise StoreNotConformant unless create-only and if-match writes are both enforced."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        store.put(key, b"first", if_none_match=True)
        try:
            store.put(key, b"second", if_none_match=True)
        except PreconditionFailed:
            pass
        else:
            raise StoreNotConformant(
                f"{store.url} ignores If-None-Match: a second create-only write replaced the first. "
                "Fermion's registry needs conditional writes (AWS S3, LocalStack and MinIO have them); "
                "refusing to write so no version can be overwritten"
            )
        try:
            store.put(key, b"third", if_match='"00000000000000000000000000000000"')
        except PreconditionFailed:
            pass
        else:
            raise StoreNotConformant(
                f"{store.url} ignores If-Match: a write with a stale ETag succeeded, so aliases could lose "
                "updates; refusing to write"
            )
    finally:
        with contextlib.suppress(StoreError):
            store.delete(key)
