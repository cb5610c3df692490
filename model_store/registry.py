"""The model registry over an object store.

Layout (one bucket or one directory)::

    models/{tenant}/{name}/versions/{n}/model.onnx     files first, each create-only
    models/{tenant}/{name}/versions/{n}/manifest.json  last, create-only: the version now exists
    models/{tenant}/{name}/aliases/{alias}.json        moved by compare-and-swap

Version numbers are allocated without a lock: a writer claims `n` by creating the first file of
`versions/{n}/` create-only and, if another writer holds it, takes the next number.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from pydantic import ValidationError

from .aliases import Alias, moved
from .backends import ObjectStore, open_store
from .cache import FileCache
from .claims import EventClaims
from .conformance import check_conditional_writes
from .errors import (
    AliasConflict,
    AliasNotFound,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    ObjectNotFound,
    PreconditionFailed,
    RegistryError,
    VersionNotFound,
)
from .manifest import MANIFEST, MODEL_FILE, Draft, Manifest, content_sha256, file_entry
from .settings import StoreSettings
from .signing import SIGNATURE_FILE, Signer, Verifier

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MAX_CLAIM_ATTEMPTS = 1000
_MAX_CAS_ATTEMPTS = 50
LATEST = "latest"
SERVED = "production"  # the alias a bare model name serves


def check_name(kind: str, name: str) -> str:
    """`name` if it is a safe path segment, else InvalidName saying what is allowed."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidName(
            f"invalid {kind} name {name!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit, without '..'"
        )
    return name


def normal_name(text: str) -> str:
    """The one naming rule's normal form of `text` (datasets and models alike): lower case, runs of
    other characters as '-', trimmed to start with a letter or digit, at most 63 characters.
    `Iris.csv`'s stem `Iris` is `iris`; `My Model!` is `my-model`. The result may still fail
    `check_name` (an empty or all-symbol text), which then names the rule."""
    out = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip("-._")
    out = re.sub(r"\.{2,}", ".", out)
    return out[:63].rstrip("-._") or text


class Unset:
    """The type of UNSET: no expectation given."""


UNSET = Unset()


class ModelSummary(TypedDict):
    """A model's versions and where its aliases point, for listings."""

    name: str
    versions: list[int]
    aliases: dict[str, int]


class Registry:
    """Immutable model versions, their manifests, and aliases, over any ObjectStore."""

    def __init__(
        self,
        store: ObjectStore,
        cache_dir: Path,
        *,
        cache_max_bytes: int = 2 << 30,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.store = store
        self.cache = FileCache(cache_dir, max_bytes=cache_max_bytes)
        self.signer = signer  # signs each manifest it registers
        self.verifier = verifier  # refuses a manifest no trusted key signed
        self.claims = EventClaims(store)
        self._conformant = False

    def _writable(self) -> None:
        # Probed once per registry, before its first write: never write to a store that would corrupt it.
        if not self._conformant:
            check_conditional_writes(self.store)
            self._conformant = True

    # --- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _model_prefix(tenant: str, name: str) -> str:
        return f"models/{check_name('tenant', tenant)}/{check_name('model', name)}/"

    def _version_prefix(self, tenant: str, name: str, version: int) -> str:
        return f"{self._model_prefix(tenant, name)}versions/{version}/"

    def version_uri(self, tenant: str, name: str, version: int) -> str:
        """Where a version's files live, as a URI of the store (for events and logs)."""
        return f"{self.store.url}/{self._version_prefix(tenant, name, version).rstrip('/')}"

    def _alias_key(self, tenant: str, name: str, alias: str) -> str:
        return f"{self._model_prefix(tenant, name)}aliases/{check_name('alias', alias)}.json"

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
            if filename == MANIFEST or "/" in filename or filename.startswith("."):
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
            return self._commit(winner, claimed=True)
        return self._commit(manifest)

    def registered_for(self, tenant: str, name: str, event_id: str) -> Manifest | None:
        """The version `event_id` became, if any writer claimed it (finishing a writer that died after its claim)."""
        claimed = self.claims.get(self._model_prefix(tenant, name), event_id)
        return None if claimed is None else self._commit(claimed, claimed=True)

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
        self, tenant: str, name: str, alias: str, version: int, *, expected: int | Unset | None = UNSET
    ) -> int | None:
        """Point `alias` at `version`; returns the version it pointed to before.

        With `expected`, the move happens only if the alias still points there (None: does not
        exist yet); otherwise AliasConflict says who moved it. Without, concurrent moves are
        serialised by compare-and-swap and none is lost.
        """
        self.manifest(tenant, name, version)  # an alias only ever points at a version that exists
        self._writable()

        def move(current: Alias | None) -> Alias | None:
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

    def rollback(self, tenant: str, name: str, alias: str) -> tuple[int, int]:
        """Point `alias` back at the version it held before its last move; returns (from, to)."""
        self._writable()
        undone: list[tuple[int, int]] = []

        def back(current: Alias | None) -> Alias:
            if current is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
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

    # --- reads ----------------------------------------------------------------------------------

    def models(self, tenant: str) -> list[str]:
        """Names of the models a tenant has."""
        return self.store.children(f"models/{check_name('tenant', tenant)}/")

    def versions(self, tenant: str, name: str) -> list[int]:
        """The versions of `name` that exist (have a manifest), ascending."""
        prefix = f"{self._model_prefix(tenant, name)}versions/"
        found = {
            int(parts[0])
            for key in self.store.list(prefix)
            if len(parts := key[len(prefix) :].split("/")) == 2 and parts[1] == MANIFEST and parts[0].isdigit()
        }
        return sorted(found)

    def alias(self, tenant: str, name: str, alias: str) -> Alias:
        """The alias record; AliasNotFound (or ModelNotFound) when absent."""
        try:
            raw, _ = self.store.get(self._alias_key(tenant, name, alias))
        except ObjectNotFound:
            if not self.store.children(self._model_prefix(tenant, name)):
                raise ModelNotFound(f"no model {name!r} for tenant {tenant!r}") from None
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}") from None
        return Alias.model_validate_json(raw)

    def resolve(self, tenant: str, name: str, ref: str | int | None = None) -> int:
        """The version number `ref` (a version, an alias, or None for `latest`) points to."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        return self.alias(tenant, name, ref or LATEST).version

    def lookup(self, tenant: str, ref: str) -> Manifest:
        """The manifest `ref` names: `name` (latest), `name:version` or `name@alias`."""
        name, _, version = ref.partition(":")
        name, _, alias = name.partition("@")
        if version and alias:
            raise InvalidName(f"invalid model reference {ref!r}: use NAME, NAME:VERSION or NAME@ALIAS")
        if version and not version.isdigit():
            raise InvalidName(f"invalid version {version!r} in {ref!r}: versions are positive integers")
        return self.manifest(tenant, name, int(version) if version else self.resolve(tenant, name, alias or None))

    def manifest(self, tenant: str, name: str, version: int) -> Manifest:
        """The manifest of a version; VersionNotFound if it does not exist (yet).

        With a verifier, SignatureError unless a trusted key signed exactly these bytes.
        """
        prefix = self._version_prefix(tenant, name, version)
        try:
            raw, _ = self.store.get(prefix + MANIFEST)
        except ObjectNotFound:
            if not self.store.children(self._model_prefix(tenant, name)):
                raise ModelNotFound(f"no model {name!r} for tenant {tenant!r}") from None
            raise VersionNotFound(f"model {name!r} has no version {version}") from None
        if self.verifier is not None:
            try:
                seal: bytes | None = self.store.get(prefix + SIGNATURE_FILE)[0]
            except ObjectNotFound:
                seal = None
            self.verifier.verify(raw, seal, f"{tenant}/{name} version {version}")
        try:
            return Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"manifest of {name} version {version} is unreadable: {exc}") from exc

    def fetch(self, manifest: Manifest, filename: str = MODEL_FILE) -> Path:
        """A local path to a version's file, verified against the manifest's sha256 and size."""
        entry = manifest.files.get(filename)
        if entry is None:
            raise IntegrityError(f"{manifest.name} version {manifest.version} has no file {filename!r}")
        key = self._version_prefix(manifest.tenant, manifest.name, manifest.version) + filename

        def fill(tmp: Path) -> None:
            try:
                self.store.download(key, tmp)
            except ObjectNotFound as exc:
                raise IntegrityError(f"{key} is listed in the manifest but missing from the store") from exc

        return self.cache.get(entry, fill, what=key)

    def fetch_all(self, manifest: Manifest) -> Path:
        """A directory with every file of a version under its own name (an ONNX model with external data).

        Files are hard links to verified cache entries; the directory appears whole or not at all.
        """
        target = self.cache.root.parent / "versions" / manifest.content_sha256
        if target.is_dir():
            return target
        paths = {name: self.fetch(manifest, name) for name in manifest.files}
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        for name, path in paths.items():
            os.link(path, staging / name)
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first: same content, keep theirs
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def describe(self, tenant: str, name: str) -> ModelSummary:
        """A model's versions and aliases, for listings."""
        prefix = f"{self._model_prefix(tenant, name)}aliases/"
        aliases: dict[str, int] = {}
        for fn in self.store.children(prefix):
            if fn.endswith(".json"):
                raw, _ = self.store.get(prefix + fn)
                aliases[fn.removesuffix(".json")] = json.loads(raw)["version"]
        return ModelSummary(name=name, versions=self.versions(tenant, name), aliases=aliases)


def open_registry(settings: StoreSettings, *, signs: bool = True) -> Registry:
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
