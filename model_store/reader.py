"""Reading the model registry: where a model's objects live, versions, aliases, verified manifests, cached files.

`Registry` (registry.py) adds the writes; a reader never writes to the store.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TypedDict, TypeVar

from pydantic import ValidationError

from .aliases import Alias
from .backends import ObjectStore
from .cache import FileCache, VersionFolders
from .errors import (
    AliasNotFound,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    ObjectNotFound,
    StoreError,
    VersionNotFound,
)
from .manifest import MANIFEST, MODEL_FILE, Manifest
from .names import LATEST, check_name
from .signing import SIGNATURE_FILE, Verifier

log = logging.getLogger(__name__)

T = TypeVar("T")


def beside(call: Callable[[], T]) -> Future[T]:
    """Start `call` in a thread of its own (in this context: the trace and log fields go with it).

    Its result, or what it raised, comes in the future. A daemon thread, not a pool's: a download
    still running never holds up the interpreter's exit.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="fermion-store-read", daemon=True).start()
    return future


class EarlyFetch:
    """A version's file downloading before its manifest has been read; `fetch` claims it or it is deleted."""

    def __init__(self, store: ObjectStore, key: str, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".tmp-early-", dir=directory)  # the cache's own temporaries
        os.close(fd)
        self.key, self.path = key, Path(name)
        self.done = beside(lambda: store.download(key, self.path))

    def claim(self, dest: Path) -> bool:
        """Wait for the download and move it to `dest`; False if it failed (the caller downloads again).

        It may have failed where a download now would not: a store that did not answer, or a version
        whose files were still being written when the early read went out.
        """
        try:
            self.done.result()
        except StoreError:
            return False
        os.replace(self.path, dest)
        return True

    def drop(self) -> None:
        """Delete the download (once it ends: a running one is not interrupted) unless it was claimed."""
        self.done.add_done_callback(lambda _: self.path.unlink(missing_ok=True))


class ModelSummary(TypedDict):
    """A model's versions and where its aliases point, for listings."""

    name: str
    versions: list[int]
    aliases: dict[str, int]
    splits: dict[str, dict[int, int]]
    """Each alias's live split, version → percent (one version at 100 unless a rollout runs)."""


class RegistryReader:
    """Model versions, their manifests and aliases, read from any ObjectStore and checked on the way."""

    def __init__(
        self, store: ObjectStore, cache_dir: Path, *, cache_max_bytes: int = 2 << 30, verifier: Verifier | None = None
    ) -> None:
        self.store = store
        self.cache = FileCache(cache_dir, max_bytes=cache_max_bytes)
        self.folders = VersionFolders(cache_dir / "versions")
        self.verifier = verifier  # refuses a manifest no trusted key signed
        self._fetched_early: set[str] = set()  # objects downloaded early in this process (once each)
        self._early_guard = threading.Lock()

    # --- keys -----------------------------------------------------------------------------------

    @staticmethod
    def _model_prefix(tenant: str, name: str) -> str:
        return f"models/{check_name('tenant', tenant)}/{check_name('model', name)}/"

    def _version_prefix(self, tenant: str, name: str, version: int) -> str:
        return f"{self._model_prefix(tenant, name)}versions/{version}/"

    def version_uri(self, tenant: str, name: str, version: int) -> str:
        """Where a version's files live, as a URI of the store (for events and logs)."""
        return f"{self.store.url}/{self._version_prefix(tenant, name, version).rstrip('/')}"

    def _where(self, key: str) -> str:
        """An object's URI: the name the cache remembers it by."""
        return f"{self.store.url}/{key}"

    def _alias_key(self, tenant: str, name: str, alias: str) -> str:
        return f"{self._model_prefix(tenant, name)}aliases/{check_name('alias', alias)}.json"

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

        With a verifier, SignatureError unless a trusted key signed exactly these bytes; always,
        IntegrityError unless the manifest names the tenant, model and version it was read for.
        """
        prefix = self._version_prefix(tenant, name, version)
        # From a remote store the signature is read beside the manifest: one round trip, not two.
        verifier = self.verifier
        overlap = verifier is not None and self.store.remote
        sealed = beside(lambda: self.store.get(prefix + SIGNATURE_FILE)[0]) if overlap else None
        try:
            raw, _ = self.store.get(prefix + MANIFEST)
        except ObjectNotFound:
            if not self.store.children(self._model_prefix(tenant, name)):
                raise ModelNotFound(f"no model {name!r} for tenant {tenant!r}") from None
            raise VersionNotFound(f"model {name!r} has no version {version}") from None
        if verifier is not None:
            seal: bytes | None = None
            if sealed is not None:
                with contextlib.suppress(ObjectNotFound):
                    seal = sealed.result()
            if seal is None:  # not read yet, or read before the writer put it there (just before the manifest)
                with contextlib.suppress(ObjectNotFound):
                    seal = self.store.get(prefix + SIGNATURE_FILE)[0]
            verifier.verify(raw, seal, f"{tenant}/{name} version {version}")
        try:
            manifest = Manifest.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"manifest of {name} version {version} is unreadable: {exc}") from exc
        # A signature vouches for the bytes, not for where they lie: a manifest copied to another
        # tenant, model or version number (a replay, a rollback in disguise) is refused here, and its
        # files, which `fetch` finds by the manifest's own place, are never reached.
        if (manifest.tenant, manifest.name, manifest.version) != (tenant, name, version):
            raise IntegrityError(
                f"{tenant}/{name} version {version} holds the manifest of "
                f"{manifest.tenant}/{manifest.name} version {manifest.version}: copied from elsewhere, refused"
            )
        return manifest

    @contextlib.contextmanager
    def fetching_early(self, tenant: str, name: str, version: int, filename: str) -> Iterator[EarlyFetch | None]:
        """Download a version's file beside the reads of its manifest and signature, for `fetch(early=)`.

        On a cold load the file's GET then overlaps the manifest's instead of following it. Its bytes
        are trusted only once `fetch` has checked them against the manifest, as any download's.
        Nothing starts for a local store (no round trip to save), when the cache still holds what it
        last fetched from that object, or when that object was downloaded early before in this
        process: a load that failed (a refused signature, a variant the version lacks) is retried
        without one, so retries cannot pile up downloads. An early download no fetch claimed is
        deleted once it ends.
        """
        if not self.store.remote:
            yield None
            return
        key = self._version_prefix(tenant, name, version) + filename
        with self._early_guard:
            first = key not in self._fetched_early
            if len(self._fetched_early) >= 10_000:  # made-up version numbers must not grow it without bound
                self._fetched_early.clear()
            self._fetched_early.add(key)
        if not first or self.cache.holds(self._where(key)):
            yield None
            return
        early = EarlyFetch(self.store, key, self.cache.root)
        try:
            yield early
        finally:
            early.drop()

    def fetch(self, manifest: Manifest, filename: str = MODEL_FILE, *, early: EarlyFetch | None = None) -> Path:
        """A local path to a version's file, verified against the manifest's sha256 and size.

        `early` (from `fetching_early`) is used where it is this file's download.
        """
        entry = manifest.files.get(filename)
        if entry is None:
            raise IntegrityError(f"{manifest.name} version {manifest.version} has no file {filename!r}")
        key = self._version_prefix(manifest.tenant, manifest.name, manifest.version) + filename

        def fill(tmp: Path) -> None:
            try:
                if early is None or early.key != key or not early.claim(tmp):
                    self.store.download(key, tmp)
            except ObjectNotFound as exc:
                raise IntegrityError(f"{key} is listed in the manifest but missing from the store") from exc

        # Which entry this object filled is remembered only where `fetching_early` asks (remote stores).
        return self.cache.get(entry, fill, what=key, name=self._where(key) if self.store.remote else None)

    def fetch_all(self, manifest: Manifest, *, early: EarlyFetch | None = None) -> Path:
        """A directory with every file of a version under its own name (an ONNX model with external data).

        Files are hard links to verified cache entries; the directory appears whole or not at all, and
        is checked against the manifest before it is reused (cache.VersionFolders).
        """

        def fill() -> dict[str, Path]:
            return {filename: self.fetch(manifest, filename, early=early) for filename in manifest.files}

        what = f"{manifest.tenant}/{manifest.name} version {manifest.version}"  # no local paths in answers
        return self.folders.get(manifest.content_sha256, manifest.files, fill, what=what)

    def describe(self, tenant: str, name: str) -> ModelSummary:
        """A model's versions, its aliases and what each alias serves, for listings.

        A listing shows what it can: an alias deleted while it is read is left out, and a record that
        does not validate (written by hand) is listed by its `version` alone, serving it all.
        """
        prefix = f"{self._model_prefix(tenant, name)}aliases/"
        aliases: dict[str, int] = {}
        splits: dict[str, dict[int, int]] = {}
        for fn in self.store.children(prefix):
            if not fn.endswith(".json"):
                continue
            alias = fn.removesuffix(".json")
            try:
                raw, _ = self.store.get(prefix + fn)
            except ObjectNotFound:
                continue
            try:
                record = Alias.model_validate_json(raw)
                aliases[alias], splits[alias] = record.version, record.split()
            except ValidationError:
                version = _bare_version(raw)
                if version is None:
                    log.warning("alias %s of %s/%s is unreadable: left out of the listing", alias, tenant, name)
                    continue
                aliases[alias], splits[alias] = version, {version: 100}
        return ModelSummary(name=name, versions=self.versions(tenant, name), aliases=aliases, splits=splits)


def _bare_version(raw: bytes) -> int | None:
    """The `version` of an alias record that is JSON but not a valid record (None: not even that)."""
    try:
        version = json.loads(raw).get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None
