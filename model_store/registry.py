"""The model registry over an object store.

Layout (one bucket or one directory)::

    models/{tenant}/{name}/versions/{n}/model.onnx     files first, each create-only
    models/{tenant}/{name}/versions/{n}/manifest.json  last, create-only: the version now exists
    models/{tenant}/{name}/aliases/{alias}.json        moved by compare-and-swap

Version numbers are allocated without a lock: a writer claims `n` by creating the first file of
`versions/{n}/` create-only and, if another writer holds it, takes the next number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from .aliases import Alias, moved
from .backends import ObjectStore, open_store
from .claims import EventClaims
from .config import StoreConfig
from .conformance import check_conditional_writes
from .errors import (
    AliasConflict,
    AliasNotFound,
    IntegrityError,
    InvalidName,
    ObjectNotFound,
    PreconditionFailed,
    RegistryError,
    RolloutInProgress,
)
from .manifest import MANIFEST, MODEL_FILE, Draft, Manifest, content_sha256, file_entry
from .names import LATEST, SERVED
from .reader import RegistryReader
from .signing import SIGNATURE_FILE, Signer, Verifier

log = logging.getLogger(__name__)

_MAX_CLAIM_ATTEMPTS = 1000
_MAX_CAS_ATTEMPTS = 50


class Unset:
    """The type of UNSET: no expectation given."""


UNSET = Unset()


class Registry(RegistryReader):
    """Immutable model versions, their manifests, and aliases, over any ObjectStore: the reads, and the writes."""

    def __init__(
        self,
        store: ObjectStore,
        cache_dir: Path,
        *,
        cache_max_bytes: int = 2 << 30,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        super().__init__(store, cache_dir, cache_max_bytes=cache_max_bytes, verifier=verifier)
        self.signer = signer  # signs each manifest it registers
        self.claims = EventClaims(store)
        self._conformant = False

    def _writable(self) -> None:
        # Probed once per registry, before its first write: never write to a store that would corrupt it.
        if not self._conformant:
            check_conditional_writes(self.store)
            self._conformant = True

    # --- writes ---------------------------------------------------------------------------------

    def register(
        self, tenant: str, name: str, files: Mapping[str, bytes], draft: Draft, *, event_id: str | None = None
    ) -> Manifest:
        """Store `files` as the next version of `name`, manifest last, and move `latest` to it.

        With `event_id`, the event becomes at most one version however often (and however
        concurrently) this is called for it: every call returns the version the claim names
        (see claims.py).
        """
        if MODEL_FILE not in files:
            raise InvalidName(f"a version needs a {MODEL_FILE}; got {sorted(files)}")
        for filename in files:
            if filename in (MANIFEST, SIGNATURE_FILE) or "/" in filename or filename.startswith("."):
                raise InvalidName(f"invalid file name {filename!r} in a model version")
        entries = {fn: file_entry(data) for fn, data in files.items()}
        self._writable()
        if event_id is not None and (done := self.registered_for(tenant, name, event_id)) is not None:
            return done
        version = self._claim_version(tenant, name, files[MODEL_FILE])
        prefix = self._version_prefix(tenant, name, version)
        for filename, data in files.items():
            if filename != MODEL_FILE:
                self.store.put(prefix + filename, data, if_none_match=True)
        manifest = Manifest(
            **draft.model_dump(),
            tenant=tenant,
            name=name,
            version=version,
            files=entries,
            content_sha256=content_sha256(entries),
        )
        if event_id is not None:
            winner = self.claims.take(self._model_prefix(tenant, name), event_id, manifest)
            if winner.version != version:  # another writer registered this event first: ours stays invisible
                log.info(
                    "event %s is %s/%s version %d already; dropping %d", event_id, tenant, name, winner.version, version
                )
                for filename in files:  # the model file stays: it holds the number, so none is ever reused
                    if filename != MODEL_FILE:
                        self.store.delete(prefix + filename)
            return self._commit(_placed(winner, tenant, name, event_id), claimed=True)
        return self._commit(manifest)

    def registered_for(self, tenant: str, name: str, event_id: str) -> Manifest | None:
        """The version `event_id` became, if any writer claimed it (finishing a writer that died after its claim)."""
        claimed = self.claims.get(self._model_prefix(tenant, name), event_id)
        return None if claimed is None else self._commit(_placed(claimed, tenant, name, event_id), claimed=True)

    def _commit(self, manifest: Manifest, *, claimed: bool = False) -> Manifest:
        """Write the manifest (the version now exists) and move `latest` forward to it.

        A `claimed` manifest is an event claim's: whoever read the claim may have written it first.
        """
        key = self._version_prefix(manifest.tenant, manifest.name, manifest.version) + MANIFEST
        body = manifest.model_dump_json(indent=2).encode()
        try:
            if self.signer is not None:  # before the manifest: a version that exists is signed
                self.store.put(key.removesuffix(MANIFEST) + SIGNATURE_FILE, self.signer.sign(body), if_none_match=True)
            self.store.put(key, body, if_none_match=True)
            log.info("registered %s/%s version %d", manifest.tenant, manifest.name, manifest.version)
        except PreconditionFailed:
            if not claimed:
                raise
        self._advance_latest(manifest.tenant, manifest.name, manifest.version)
        self._bootstrap_served(manifest.tenant, manifest.name, manifest.version)
        return manifest

    def _claim_version(self, tenant: str, name: str, first_file: bytes) -> int:
        taken = [int(v) for v in self.store.children(f"{self._model_prefix(tenant, name)}versions/") if v.isdigit()]
        version = max(taken, default=0) + 1
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            try:
                self.store.put(self._version_prefix(tenant, name, version) + MODEL_FILE, first_file, if_none_match=True)
                return version
            except PreconditionFailed:
                version += 1
        raise RegistryError(f"could not claim a version of {tenant}/{name} in {_MAX_CLAIM_ATTEMPTS} attempts")

    def set_alias(
        self,
        tenant: str,
        name: str,
        alias: str,
        version: int,
        *,
        expected: int | Unset | None = UNSET,
        abort_rollout: bool = False,
    ) -> int | None:
        """Point `alias` at `version`; returns the version it pointed to before.

        With `expected`, the move happens only if the alias still points there (None: does not
        exist yet); otherwise AliasConflict says who moved it. Without, concurrent moves are
        serialised by compare-and-swap and none is lost. A rollout on the alias refuses the move
        (RolloutInProgress) unless `abort_rollout`: the move then ends it.
        """
        self.manifest(tenant, name, version)  # an alias only ever points at a version that exists
        self._writable()

        def move(current: Alias | None) -> Alias | None:
            _refuse_under_rollout(current, name, alias, abort_rollout, f"promoting version {version}")
            previous = current.version if current else None
            if not isinstance(expected, Unset) and previous != expected:
                raise AliasConflict(
                    f"alias {alias!r} of {name} points to version {previous}, not {expected}: "
                    "someone moved it since you read it"
                )
            if previous == version and not (current and current.weights):
                return None
            return moved(current, version)

        return self._swap_alias(tenant, name, alias, move)

    def rollback(self, tenant: str, name: str, alias: str, *, abort_rollout: bool = False) -> tuple[int, int]:
        """Point `alias` back at the version it held before its last move; returns (from, to).

        A rollout on the alias refuses it (RolloutInProgress) unless `abort_rollout`: then the
        split ends and the incumbent serves alone.
        """
        self._writable()
        undone: list[tuple[int, int]] = []

        def back(current: Alias | None) -> Alias:
            if current is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
            _refuse_under_rollout(current, name, alias, abort_rollout, "rolling back")
            if current.weights:  # a split in progress: back to the incumbent alone (rollouts.py)
                undone[:] = [(max(current.weights, key=lambda v: (v != current.version, v)), current.version)]
                return current.with_split({current.version: 100}, "rolled back", None)
            if not current.history:
                raise AliasConflict(f"alias {alias!r} of {name} has no earlier version to roll back to")
            undone[:] = [(current.version, current.history[-1])]
            return Alias(version=current.history[-1], updated_at=datetime.now(UTC), history=current.history[:-1])

        self._swap_alias(tenant, name, alias, back)
        return undone[0]

    def delete_alias(self, tenant: str, name: str, alias: str) -> None:
        """Remove an alias (`latest` is the registry's own and cannot be removed)."""
        if alias == LATEST:
            raise InvalidName("the 'latest' alias is maintained by the registry and cannot be deleted")
        self.alias(tenant, name, alias)
        self.store.delete(self._alias_key(tenant, name, alias))

    def _advance_latest(self, tenant: str, name: str, version: int) -> None:
        # `latest` only moves forward: a slow writer of version 3 never moves it back from 4.
        self._swap_alias(
            tenant, name, LATEST, lambda cur: moved(cur, version) if cur is None or cur.version < version else None
        )

    def _bootstrap_served(self, tenant: str, name: str, version: int) -> None:
        # A new model's first version becomes what its bare name serves; after that only a gate or
        # a principal with `promote` moves SERVED (a later training never changes what clients get).
        if self.versions(tenant, name) == [version]:
            self._swap_alias(tenant, name, SERVED, lambda cur: moved(cur, version) if cur is None else None)

    def update_alias(
        self, tenant: str, name: str, alias: str, move: Callable[[Alias | None], Alias | None]
    ) -> int | None:
        """Apply `move` to the alias record by compare-and-swap (weighted splits: `rollouts.py`)."""
        self._writable()
        return self._swap_alias(tenant, name, alias, move)

    def _swap_alias(
        self, tenant: str, name: str, alias: str, move: Callable[[Alias | None], Alias | None]
    ) -> int | None:
        """Apply `move` to the alias record by compare-and-swap, retrying when another writer won."""
        key = self._alias_key(tenant, name, alias)
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                raw, etag = self.store.get(key)
                current: Alias | None = Alias.model_validate_json(raw)
            except ObjectNotFound:
                current, etag = None, None
            previous = current.version if current else None
            record = move(current)
            if record is None:
                return previous
            try:
                body = record.model_dump_json().encode()
                if etag is None:
                    self.store.put(key, body, if_none_match=True)
                else:
                    self.store.put(key, body, if_match=etag)
            except PreconditionFailed:
                continue
            log.info("alias %s/%s@%s: %s -> %d", tenant, name, alias, previous, record.version)
            return previous
        raise AliasConflict(
            f"alias {alias!r} of {tenant}/{name} kept changing; gave up after {_MAX_CAS_ATTEMPTS} attempts"
        )


def _refuse_under_rollout(current: Alias | None, name: str, alias: str, abort: bool, what: str) -> None:
    """A person's promote or rollback never replaces a running rollout silently (issue 27)."""
    if current is None or current.rollout is None or abort:
        return
    plan = current.rollout
    split = ", ".join(f"v{v} {w}%" for v, w in sorted(current.split().items()))
    raise RolloutInProgress(
        f"{name}@{alias} is rolling out version {plan.canary} over version {plan.incumbent} ({split}, "
        f"step {plan.step + 1} of {len(plan.steps)}); {what} would end it: abort the rollout explicitly "
        "(abort_rollout, --abort-rollout, or `fermion canary abort`) or wait for it to finish"
    )


def _placed(claimed: Manifest, tenant: str, name: str, event_id: str) -> Manifest:
    """A claim's manifest, if it is for the model whose prefix holds the claim: a writer commits (signs) it."""
    if (claimed.tenant, claimed.name) != (tenant, name):
        raise IntegrityError(
            f"the claim of event {event_id!r} under {tenant}/{name} names "
            f"{claimed.tenant}/{claimed.name} version {claimed.version}; refusing to commit it"
        )
    return claimed


def open_registry(settings: StoreConfig, *, signs: bool = True) -> Registry:
    """The registry the settings describe.

    `signs=False` for a process that only reads (inference): it never loads the private signing key
    (nor cryptography's PEM machinery: start-up time). A writer loads it here, so a bad key stops it
    at start, not after a training, with a version claimed.
    """
    store = open_store(
        settings.store_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_sse=settings.s3_sse,
        s3_kms_key_id=settings.s3_kms_key_id,
        s3_multipart_threshold=settings.s3_multipart_threshold,
        s3_multipart_part_size=settings.s3_multipart_part_size,
        s3_multipart_concurrency=settings.s3_multipart_concurrency,
    )
    key_file = settings.signing_key_file if signs else None
    signer = Signer.from_file(key_file) if key_file is not None and key_file.exists() else None
    verifier = Verifier.from_texts(settings.trusted_public_keys()) if settings.verify_signatures else None
    return Registry(
        store,
        settings.cache_dir or settings.home / "cache",
        cache_max_bytes=settings.cache_max_bytes,
        signer=signer,
        verifier=verifier,
    )
