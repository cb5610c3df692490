"""Training checkpoints in the object store: a killed job resumes where its last checkpoint left it.

The layout, per job (the training event id)::

    checkpoints/{tenant}/{job}/epoch-000012.ckpt   written create-only, never overwritten
    checkpoints/{tenant}/{job}/latest.json         the pointer, moved forward by compare-and-swap
    checkpoints/{tenant}/{job}/finished.json       written when the job registered its model

A checkpoint object is a header line (JSON: epoch, sha256 and size of the body) and an opaque body
(what the trainer serialised), so any object can be verified on its own, with or without the pointer.
The pointer only moves forward: a late writer (an earlier delivery still running) never moves it
back. Resuming takes the pointer's checkpoint when it verifies, else the newest one that does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from .backends.base import ObjectStore
from .errors import ObjectNotFound, PreconditionFailed
from .names import check_name

MAGIC = b"FERMION-CHECKPOINT 1\n"
POINTER = "latest.json"
FINISHED = "finished.json"
_EPOCH_FILE = re.compile(r"^epoch-(\d{6,})\.ckpt$")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CAS_TRIES = 8


@dataclass(frozen=True)
class Checkpoint:
    """One verified checkpoint: its epoch, its body, and what the writer said about it."""

    epoch: int
    body: bytes
    meta: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Saved:
    """Where a checkpoint went and what it cost."""

    epoch: int
    key: str
    size: int
    seconds: float
    pointer_moved: bool


class CheckpointStore:
    """Checkpoints of running jobs, beside the registry in the same object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _prefix(self, tenant: str, job_id: str) -> str:
        if not _JOB_ID.match(job_id):  # event ids are free text: hash the unsafe ones into a key
            job_id = "h" + hashlib.sha256(job_id.encode()).hexdigest()[:40]
        return f"checkpoints/{check_name('tenant', tenant)}/{job_id}/"

    def save(self, tenant: str, job_id: str, epoch: int, body: bytes, meta: dict[str, Any] | None = None) -> Saved:
        """Write the checkpoint of `epoch` create-only, then move the pointer forward to it."""
        started = time.perf_counter()
        prefix = self._prefix(tenant, job_id)
        key = f"{prefix}epoch-{epoch:06d}.ckpt"
        digest = hashlib.sha256(body).hexdigest()
        header = {"epoch": epoch, "sha256": digest, "size": len(body), "meta": meta or {}}
        data = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + body
        try:
            self.store.put(key, data, if_none_match=True)
        except PreconditionFailed:
            # An earlier delivery wrote this epoch already; keep it if it is sound, else it is ours to replace.
            if self._read(key) is None:
                self.store.delete(key)
                self.store.put(key, data, if_none_match=True)
        moved = self._advance(prefix, epoch, key, digest, meta or {})
        return Saved(epoch, key, len(data), time.perf_counter() - started, moved)

    def _advance(self, prefix: str, epoch: int, key: str, sha256: str, meta: dict[str, Any]) -> bool:
        pointer = {"epoch": epoch, "key": key, "sha256": sha256, "updated_at": time.time(), "meta": meta}
        raw = json.dumps(pointer).encode()
        for _ in range(_CAS_TRIES):
            try:
                current, etag = self.store.get(prefix + POINTER)
            except ObjectNotFound:
                try:
                    self.store.put(prefix + POINTER, raw, if_none_match=True)
                    return True
                except PreconditionFailed:
                    continue
            if json.loads(current).get("epoch", -1) >= epoch:
                return False  # never backwards: a newer checkpoint is already the one to resume from
            try:
                self.store.put(prefix + POINTER, raw, if_match=etag)
                return True
            except PreconditionFailed:
                continue
        return False

    def pointer(self, tenant: str, job_id: str) -> dict[str, Any] | None:
        """The pointer as it is (epoch, key, the writer's meta), without reading the checkpoint."""
        try:
            found = json.loads(self.store.get(self._prefix(tenant, job_id) + POINTER)[0])
        except (ObjectNotFound, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def latest(self, tenant: str, job_id: str) -> Checkpoint | None:
        """The newest checkpoint that verifies: the pointer's, else the newest sound one by epoch."""
        prefix = self._prefix(tenant, job_id)
        tried: set[str] = set()
        try:
            pointer = json.loads(self.store.get(prefix + POINTER)[0])
            found = self._read(str(pointer["key"]))
            tried.add(str(pointer["key"]))
            if found is not None and found.epoch == pointer.get("epoch"):
                newer = [e for e, k in self._epochs(prefix) if e > found.epoch and k not in tried]
                if not newer:
                    return found
        except (ObjectNotFound, ValueError, KeyError):
            pass
        for _, key in sorted(self._epochs(prefix), reverse=True):
            if key not in tried and (found := self._read(key)) is not None:
                return found
        return None

    def _epochs(self, prefix: str) -> list[tuple[int, str]]:
        out = []
        for name in self.store.children(prefix):
            if m := _EPOCH_FILE.match(name):
                out.append((int(m.group(1)), prefix + name))
        return out

    def _read(self, key: str) -> Checkpoint | None:
        """The checkpoint at `key` if its header and body agree; None for a missing or damaged one."""
        try:
            data, _ = self.store.get(key)
        except ObjectNotFound:
            return None
        if not data.startswith(MAGIC):
            return None
        head, sep, body = data[len(MAGIC) :].partition(b"\n")
        try:
            header = json.loads(head) if sep else None
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("size") != len(body):
            return None
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        return Checkpoint(int(header["epoch"]), body, dict(header.get("meta") or {}), key)

    def prune(self, tenant: str, job_id: str, keep_last: int) -> list[str]:
        """Delete all but the newest `keep_last` checkpoints of a running job (never the pointer's)."""
        prefix = self._prefix(tenant, job_id)
        try:
            pointed = str(json.loads(self.store.get(prefix + POINTER)[0])["key"])
        except (ObjectNotFound, ValueError, KeyError):
            return []
        epochs = sorted(self._epochs(prefix), reverse=True)
        doomed = [k for _, k in epochs[max(keep_last, 1) :] if k != pointed]
        for key in doomed:
            self.store.delete(key)
        return doomed

    def finish(self, tenant: str, job_id: str) -> None:
        """Mark a job's checkpoints as no longer needed: its model is registered."""
        prefix = self._prefix(tenant, job_id)
        raw = json.dumps({"finished_at": time.time()}).encode()
        with contextlib.suppress(PreconditionFailed):  # an earlier delivery finished it first
            self.store.put(prefix + FINISHED, raw, if_none_match=True)

    def expire(self, tenant: str, *, finished_after_s: float, abandoned_after_s: float) -> list[str]:
        """The retention rule: delete finished jobs' checkpoints after `finished_after_s`, and those of
        jobs whose pointer has not moved for `abandoned_after_s` (failed or dead-lettered jobs).

        Returns the jobs whose checkpoints were deleted.
        """
        now = time.time()
        removed = []
        root = f"checkpoints/{check_name('tenant', tenant)}/"
        for job in self.store.children(root):
            prefix = f"{root}{job}/"
            if self._stamp(prefix + FINISHED, "finished_at", now) <= now - finished_after_s or (
                self._stamp(prefix + POINTER, "updated_at", now) <= now - abandoned_after_s
            ):
                for key in list(self.store.list(prefix)):
                    if not key.endswith(FINISHED):
                        self.store.delete(key)
                self.store.delete(prefix + FINISHED)  # last: an interrupted expiry is retried next time
                removed.append(job)
        return removed

    def _stamp(self, key: str, field: str, missing: float) -> float:
        try:
            return float(json.loads(self.store.get(key)[0])[field])
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            return missing + 1.0  # absent or unreadable: never old enough to expire on its account
