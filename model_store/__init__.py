"""The model registry: immutable versions, manifests and aliases over a local directory or S3.

The names below load their module on first use (PEP 562), so a process that needs only the registry
(the inference function, whose cold start counts) does not import the dataset and pipeline stores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import LocalDirStore, ObjectStore, open_store
    from .conformance import StoreNotConformant, check_conditional_writes
    from .datasets import (
        AmbiguousDataset,
        DatasetFormat,
        DatasetNotFound,
        DatasetStore,
        StoredDataset,
        dataset_format,
        dataset_key,
    )
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
        StoreFull,
        StoreUnavailable,
        VersionNotFound,
    )
    from .manifest import MODEL_FILE, Draft, FileEntry, Lineage, Manifest, Signature, TensorSpec
    from .pipelines import PipelineNotFound, PipelineRule, Pipelines
    from .registry import LATEST, Alias, Registry, check_name, open_registry
    from .settings import StoreSettings

_EXPORTS = {
    "Alias": "registry",
    "AliasConflict": "errors",
    "AliasNotFound": "errors",
    "AmbiguousDataset": "datasets",
    "DatasetFormat": "datasets",
    "DatasetNotFound": "datasets",
    "DatasetStore": "datasets",
    "Draft": "manifest",
    "FileEntry": "manifest",
    "IntegrityError": "errors",
    "InvalidName": "errors",
    "LATEST": "registry",
    "Lineage": "manifest",
    "LocalDirStore": "backends",
    "MODEL_FILE": "manifest",
    "Manifest": "manifest",
    "ModelNotFound": "errors",
    "NotFound": "errors",
    "ObjectNotFound": "errors",
    "ObjectStore": "backends",
    "PipelineNotFound": "pipelines",
    "PipelineRule": "pipelines",
    "Pipelines": "pipelines",
    "PreconditionFailed": "errors",
    "Registry": "registry",
    "RegistryError": "errors",
    "Signature": "manifest",
    "StoreError": "errors",
    "StoreNotConformant": "conformance",
    "StoreSettings": "settings",
    "StoreFull": "errors",
    "StoreUnavailable": "errors",
    "StoredDataset": "datasets",
    "TensorSpec": "manifest",
    "VersionNotFound": "errors",
    "check_conditional_writes": "conformance",
    "check_name": "registry",
    "dataset_format": "datasets",
    "dataset_key": "datasets",
    "open_registry": "registry",
    "open_store": "backends",
}

__all__ = [
    "LATEST",
    "MODEL_FILE",
    "Alias",
    "AliasConflict",
    "AliasNotFound",
    "AmbiguousDataset",
    "DatasetFormat",
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
    "StoreFull",
    "StoreNotConformant",
    "StoreSettings",
    "StoreUnavailable",
    "StoredDataset",
    "TensorSpec",
    "VersionNotFound",
    "check_conditional_writes",
    "check_name",
    "dataset_format",
    "dataset_key",
    "open_registry",
    "open_store",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
