"""The model registry: immutable versions, manifests and aliases over a local directory or S3.

The names below load their module on first use (PEP 562), so a process that needs only the registry
(the inference function, whose cold start counts) does not import the dataset and pipeline stores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aliases import Alias, Bounds, Rollout
    from .backends import LocalDirStore, ObjectStore, open_store
    from .checkpoints import Checkpoint, CheckpointStore
    from .config import StoreConfig
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
        RolloutInProgress,
        StoreError,
        StoreFull,
        StoreUnavailable,
        VersionNotFound,
    )
    from .keys import SCOPES, KeyNotFound, KeyRecord, KeyStore, MalformedKey, Scope, key_id_of, mint_key
    from .manifest import MODEL_FILE, Draft, FileEntry, Lineage, Manifest, Signature, TensorSpec, code_version
    from .names import LATEST, SERVED, check_name, normal_name
    from .pipelines import PipelineNotFound, PipelineRule, Pipelines
    from .registry import Registry, open_registry
    from .rollouts import Rollouts
    from .runs import EpochRecord, RunNotFound, RunRecord, Runs
    from .serving import RolloutAnalysis, ServingLog, ServingWindow, VersionTraffic
    from .settings import StoreSettings
    from .signing import SignatureError, Signer, Verifier, generate_key_pair
    from .sweeps import SweepNotFound, SweepRecord, Sweeps, TrialRecord, Winner
    from .usage import Usage, UsageLimitReached

_EXPORTS = {
    "EpochRecord": "runs",
    "RunNotFound": "runs",
    "RunRecord": "runs",
    "Runs": "runs",
    "SweepNotFound": "sweeps",
    "SweepRecord": "sweeps",
    "Sweeps": "sweeps",
    "TrialRecord": "sweeps",
    "Winner": "sweeps",
    "SERVED": "names",
    "UsageLimitReached": "usage",
    "Usage": "usage",
    "SCOPES": "keys",
    "KeyNotFound": "keys",
    "KeyRecord": "keys",
    "KeyStore": "keys",
    "MalformedKey": "keys",
    "Scope": "keys",
    "key_id_of": "keys",
    "mint_key": "keys",
    "SignatureError": "signing",
    "Signer": "signing",
    "Verifier": "signing",
    "generate_key_pair": "signing",
    "Alias": "aliases",
    "Bounds": "aliases",
    "Rollout": "aliases",
    "AliasConflict": "errors",
    "AliasNotFound": "errors",
    "AmbiguousDataset": "datasets",
    "Checkpoint": "checkpoints",
    "CheckpointStore": "checkpoints",
    "DatasetFormat": "datasets",
    "DatasetNotFound": "datasets",
    "DatasetStore": "datasets",
    "Draft": "manifest",
    "code_version": "manifest",
    "FileEntry": "manifest",
    "IntegrityError": "errors",
    "InvalidName": "errors",
    "LATEST": "names",
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
    "Rollouts": "rollouts",
    "RegistryError": "errors",
    "RolloutInProgress": "errors",
    "RolloutAnalysis": "serving",
    "ServingLog": "serving",
    "ServingWindow": "serving",
    "VersionTraffic": "serving",
    "Signature": "manifest",
    "StoreError": "errors",
    "StoreNotConformant": "conformance",
    "StoreConfig": "config",
    "StoreSettings": "settings",
    "StoreFull": "errors",
    "StoreUnavailable": "errors",
    "StoredDataset": "datasets",
    "TensorSpec": "manifest",
    "VersionNotFound": "errors",
    "check_conditional_writes": "conformance",
    "check_name": "names",
    "normal_name": "names",
    "dataset_format": "datasets",
    "dataset_key": "datasets",
    "open_registry": "registry",
    "open_store": "backends",
}

__all__ = [
    "LATEST",
    "MODEL_FILE",
    "SCOPES",
    "SERVED",
    "Alias",
    "AliasConflict",
    "AliasNotFound",
    "AmbiguousDataset",
    "Bounds",
    "Checkpoint",
    "CheckpointStore",
    "DatasetFormat",
    "DatasetNotFound",
    "DatasetStore",
    "Draft",
    "EpochRecord",
    "FileEntry",
    "IntegrityError",
    "InvalidName",
    "KeyNotFound",
    "KeyRecord",
    "KeyStore",
    "Lineage",
    "LocalDirStore",
    "MalformedKey",
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
    "Rollout",
    "RolloutAnalysis",
    "RolloutInProgress",
    "Rollouts",
    "RunNotFound",
    "RunRecord",
    "Runs",
    "Scope",
    "ServingLog",
    "ServingWindow",
    "Signature",
    "SignatureError",
    "Signer",
    "StoreConfig",
    "StoreError",
    "StoreFull",
    "StoreNotConformant",
    "StoreSettings",
    "StoreUnavailable",
    "StoredDataset",
    "SweepNotFound",
    "SweepRecord",
    "Sweeps",
    "TensorSpec",
    "TrialRecord",
    "Usage",
    "UsageLimitReached",
    "Verifier",
    "VersionNotFound",
    "VersionTraffic",
    "Winner",
    "check_conditional_writes",
    "check_name",
    "code_version",
    "dataset_format",
    "dataset_key",
    "generate_key_pair",
    "key_id_of",
    "mint_key",
    "normal_name",
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
