"""The model registry: immutable versions, manifests and aliases over a local directory or S3."""

from .backends import LocalDirStore, ObjectStore, open_store
from .conformance import StoreNotConformant, check_conditional_writes
from .datasets import AmbiguousDataset, DatasetNotFound, DatasetStore, StoredDataset, dataset_key
from .errors import (
    AliasConflict,
    AliasNotFound,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    NotFound,
    ObjectNotFound,
    PreconditionFailed,
    RegistryError,
    StoreError,
    StoreUnavailable,
    VersionNotFound,
)
from .manifest import MODEL_FILE, Draft, FileEntry, Lineage, Manifest, Signature, TensorSpec
from .pipelines import PipelineNotFound, PipelineRule, Pipelines
from .registry import LATEST, Alias, Registry, check_name, open_registry
from .settings import StoreSettings

__all__ = [
    "LATEST",
    "MODEL_FILE",
    "Alias",
    "AliasConflict",
    "AliasNotFound",
    "AmbiguousDataset",
    "DatasetNotFound",
    "DatasetStore",
    "Draft",
    "FileEntry",
    "IntegrityError",
    "InvalidName",
    "Lineage",
    "LocalDirStore",
    "Manifest",
    "ModelNotFound",
    "NotFound",
    "ObjectNotFound",
    "ObjectStore",
    "PipelineNotFound",
    "PipelineRule",
    "Pipelines",
    "PreconditionFailed",
    "Registry",
    "RegistryError",
    "Signature",
    "StoreError",
    "StoreNotConformant",
    "StoreSettings",
    "StoreUnavailable",
    "StoredDataset",
    "TensorSpec",
    "VersionNotFound",
    "check_conditional_writes",
    "check_name",
    "dataset_key",
    "open_registry",
    "open_store",
]
