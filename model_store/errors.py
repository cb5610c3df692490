"""Registry errors. Backends translate their I/O errors (OSError, botocore) into these.

::

    RegistryError
    ├── StoreError
    │   ├── StoreUnavailable      the object store cannot be reached or refused our credentials
    │   ├── StoreFull             the object store has no room for the write (disk full, quota)
    │   ├── ObjectNotFound        no object at a key
    │   └── PreconditionFailed    a create-only or compare-and-swap write lost to another writer
    ├── InvalidName               a tenant, model or alias name that could escape its prefix
    ├── NotFound
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   └── AliasNotFound
    ├── AliasConflict             an alias moved under us more times than we retry
    │   └── RolloutInProgress     a promote or rollback met a rollout it was not told to abort
    └── IntegrityError            a file does not match its manifest (checksum, size, missing)
"""


class RegistryError(Exception):
    """Base of every registry error."""


class StoreError(RegistryError):
    """The object store failed an operation."""


class StoreUnavailable(StoreError):
    """The object store cannot be reached, or refused our credentials."""


class StoreFull(StoreError):
    """The object store has no room for a write (a full disk, a quota); nothing of it was kept."""


class ObjectNotFound(StoreError):
    """No object exists at the key."""


class PreconditionFailed(StoreError):
    """A conditional write (create-only or if-match) lost to another writer."""


class InvalidName(RegistryError, ValueError):
    """A name that is empty, too long, or could escape its prefix."""


class NotFound(RegistryError):
    """Something asked for does not exist."""


class ModelNotFound(NotFound):
    """No model of that name."""


class VersionNotFound(NotFound):
    """No such version (a version exists once its manifest does)."""


class AliasNotFound(NotFound):
    """No such alias."""


class AliasConflict(RegistryError):
    """A compare-and-swap on an alias kept losing to concurrent writers."""


class RolloutInProgress(AliasConflict):
    """A promote or rollback of an alias under a rollout, without leave to abort it (names the rollout)."""


class IntegrityError(RegistryError):
    """A file's bytes do not match the manifest: never hand it to a loader."""
