"""The object-store contract every backend meets (local directory, S3)."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class ObjectStore(Protocol):
    """Keys are '/'-separated; writes can be create-only or compare-and-swap on the ETag."""

    url: str
    remote: bool
    """Whether each read is a round trip over a network (S3), worth overlapping with others (reader.py)."""

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag; raises ObjectNotFound."""
        ...

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write an object and return its ETag.

        `if_none_match=True`: create-only; `if_match=etag`: replace only that exact object.
        Either raises PreconditionFailed when another writer got there first.
        """
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; raises ObjectNotFound."""
        ...

    def download(self, key: str, dest: Path) -> None:
        """Stream an object into `dest`; raises ObjectNotFound."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix`, in no promised order."""
        ...

    def children(self, prefix: str) -> builtins.list[str]:  # `list` is a method here
        """The names directly under `prefix` (which ends with '/'): objects and 'folders' alike."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; absent is fine."""
        ...
