"""The path and query parameters the routes share, with the constraints the stores check.

A name in a path or a query follows the one naming rule (`fermion.events.envelope.NAME_PATTERN`,
which `model_store.check_name` applies to every key), so the OpenAPI document says what is
allowed and a request that breaks it is refused at the door (422) like a name in a body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from fermion.events.envelope import NAME_PATTERN

ModelName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="a model's name")]
AliasName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=63, description="an alias (`latest` is the registry's own)")
]
PipelineName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="a pipeline rule's name")]
Version = Annotated[int, Path(ge=1, description="a version number, 1 or more")]
Tenant = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, max_length=63, description="default: the key's tenant (another needs an admin key)"),
]
TenantFilter = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63, description="only this tenant's")]
ModelFilter = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63, description="only this model's")]
# A key's id: the 12 characters after `fmn_` (KeyStore's key format); nothing else can name a key.
KeyId = Annotated[str, Path(pattern=r"^[0-9A-Za-z]{12}$", description="a key's id (`fmn_<id>_...`)")]
# A run's job id: the store refuses a '/', a leading '.' and what is not printable (404 as absent).
JobId = Annotated[str, Path(min_length=1, max_length=200, description="a training's job id")]
