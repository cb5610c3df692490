"""The registry's control plane over HTTP: list, describe, promote, roll back, delete aliases."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from fermion.events import AliasMove, Bus, BusError, ModelPromoted
from fermion.model_store import LATEST, IntegrityError, Manifest
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import BusDep, RegistryDep
from .errors import AUTHENTICATED, BadRequest, Conflict, InsufficientStorage, NotFound
from .params import AliasName, ModelName, Tenant, Version

log = logging.getLogger("fermion.ingest")
router = APIRouter(prefix="/v1/models", tags=["registry"], responses=error_responses(*AUTHENTICATED))
# Moving an alias: `latest` by hand, no such model, version or alias, a lost compare-and-swap, a full store.
MOVES = error_responses(BadRequest, NotFound, Conflict, InsufficientStorage)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A blocking registry call off the event loop (its errors are translated by the app's handlers)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class AliasUpdate(BaseModel):
    """PUT /v1/models/{name}/aliases/{alias}."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    expected_version: int | None = Field(
        default=None, description="move only if the alias still points here (optimistic concurrency)"
    )
    create_only: bool = Field(default=False, description="move only if the alias does not exist yet")
    abort_rollout: bool = Field(
        default=False,
        description="a rollout running on the alias is ended by this move (false: the move is refused with 409)",
    )


@router.get("")
async def list_models(
    request: Request, registry: RegistryDep, tenant: Tenant = None, caller: Principal = needs("read")
) -> list[dict[str, Any]]:
    """Every model of the tenant with its versions, its aliases and each alias's live split (`splits`)."""
    tenant = tenant_of(request, caller, tenant)
    names = await _call(registry.models, tenant)
    return [await _call(registry.describe, tenant, n) for n in names]


@router.get("/{name}", responses=error_responses(NotFound))
async def model_versions(
    request: Request, name: ModelName, registry: RegistryDep, tenant: Tenant = None, caller: Principal = needs("read")
) -> dict[str, Any]:
    """A model's versions with their metrics, and its aliases; a version that fails its checks says why in `refused`.

    `splits`: each alias's live split, version → percent (one version at 100 unless a rollout runs).
    """
    tenant = tenant_of(request, caller, tenant)
    info = await _call(registry.describe, tenant, name)
    if not info["versions"]:
        raise NotFound(f"no model {name!r} for tenant {tenant!r}")
    versions = []
    for v in info["versions"]:
        try:
            m: Manifest = await _call(registry.manifest, tenant, name, v)
        except IntegrityError as exc:
            # Listed, since it exists, but nothing its manifest claims is shown: only why it is refused.
            versions.append(_refused(v, str(exc)))
            continue
        versions.append(
            {
                "version": v,
                "created_at": m.created_at,
                "metrics": m.metrics,
                "training_event_id": m.lineage.training_event_id,
                "content_sha256": m.content_sha256,
                "teacher": _teacher(m),
                "refused": None,
            }
        )
    return {"name": name, "aliases": info["aliases"], "splits": info["splits"], "versions": versions}


def _refused(version: int, reason: str) -> dict[str, Any]:
    """A version whose manifest failed its checks (signature, place): the fields a listing has, empty."""
    return {
        "version": version,
        "created_at": None,
        "metrics": {},
        "training_event_id": None,
        "content_sha256": "",
        "teacher": None,
        "refused": reason,
    }


def _teacher(m: Manifest) -> str | None:
    """NAME:VERSION of the teacher a distilled version learnt from; None for any other version."""
    t = m.lineage.teacher
    return f"{t['name']}:{t['version']}" if t else None


@router.get("/{name}/versions/{version}", responses=error_responses(NotFound))
async def describe_version(
    request: Request,
    name: ModelName,
    version: Version,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> Manifest:
    """A version's manifest: files and checksums, signature, metrics, lineage, compile report.

    Only once its signature verified and it lies where it says it does; otherwise 503 naming why.
    """
    tenant = tenant_of(request, caller, tenant)
    manifest: Manifest = await _call(registry.manifest, tenant, name, version)
    uri = manifest.lineage.dataset_uri
    if uri and (at := uri.find("datasets/")) > 0:  # the store key, never the store's address (a local path)
        lineage = manifest.lineage.model_copy(update={"dataset_uri": uri[at:]})
        manifest = manifest.model_copy(update={"lineage": lineage})
    return manifest


@router.get(
    "/{name}/versions/{version}/files/{filename}",
    responses={**error_responses(NotFound), 200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)
async def version_file(
    request: Request,
    name: ModelName,
    version: Version,
    filename: str,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> Response:
    """One file of a version (model.onnx, a variant, external data), verified against its signed manifest."""
    tenant = tenant_of(request, caller, tenant)
    manifest: Manifest = await _call(registry.manifest, tenant, name, version)
    if filename not in manifest.files:
        raise NotFound(f"{name} version {version} has no file {filename!r}; it has {sorted(manifest.files)}")
    path = await _call(registry.fetch, manifest, filename)
    return Response(await _call(path.read_bytes), media_type="application/octet-stream")


@router.put("/{name}/aliases/{alias}", responses=MOVES)
async def set_alias(
    request: Request,
    name: ModelName,
    alias: AliasName,
    update: AliasUpdate,
    registry: RegistryDep,
    bus: BusDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> dict[str, Any]:
    """Point an alias at a version (compare-and-swap); publishes `models.promoted`.

    A rollout running on the alias refuses the move (409 naming it) unless `abort_rollout` is true.
    """
    tenant = tenant_of(request, caller, tenant)
    movable(alias)
    kwargs: dict[str, Any] = {}
    if update.create_only:
        kwargs["expected"] = None
    elif update.expected_version is not None:
        kwargs["expected"] = update.expected_version
    kwargs["abort_rollout"] = update.abort_rollout
    previous = await _call(registry.set_alias, tenant, name, alias, update.version, **kwargs)
    _audit(request, caller, "alias.moved", tenant, name, alias, update.version, previous)
    announced = await _announce(bus, tenant, name, alias, update.version, previous)
    return {
        "name": name,
        "alias": alias,
        "version": update.version,
        "previous_version": previous,
        "announced": announced,
    }


@router.post("/{name}/aliases/{alias}/rollback", responses=MOVES)
async def rollback(
    request: Request,
    name: ModelName,
    alias: AliasName,
    registry: RegistryDep,
    bus: BusDep,
    abort_rollout: Annotated[
        bool, Query(description="a rollout running on the alias is aborted (false: refused with 409)")
    ] = False,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> dict[str, Any]:
    """Point an alias back at the version it held before its last move (a running rollout: 409 unless aborted)."""
    tenant = tenant_of(request, caller, tenant)
    movable(alias)
    was, now = await _call(registry.rollback, tenant, name, alias, abort_rollout=abort_rollout)
    _audit(request, caller, "alias.moved", tenant, name, alias, now, was)
    announced = await _announce(bus, tenant, name, alias, now, was)
    return {"name": name, "alias": alias, "version": now, "previous_version": was, "announced": announced}


@router.delete("/{name}/aliases/{alias}", status_code=204, responses=error_responses(BadRequest, NotFound))
async def delete_alias(
    request: Request,
    name: ModelName,
    alias: AliasName,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("promote"),
) -> None:
    """Remove an alias."""
    tenant = tenant_of(request, caller, tenant)
    movable(alias)
    await _call(registry.delete_alias, tenant, name, alias)
    _audit(request, caller, "alias.deleted", tenant, name, alias, None, None)


def movable(alias: str) -> None:
    """Refuse a move of `latest`, which always points at the newest version."""
    if alias == LATEST:
        raise BadRequest(f"{LATEST!r} always points at the newest version; it cannot be moved by hand")


def _audit(
    request: Request,
    caller: Principal,
    action: str,
    tenant: str,
    name: str,
    alias: str,
    version: int | None,
    previous: int | None,
) -> None:
    details = {"tenant": tenant, "version": version, "previous_version": previous}
    request.app.state.security.auditor.record(caller, action, f"{name}@{alias}", details=details)


async def _announce(bus: Bus, tenant: str, name: str, alias: str, version: int, previous: int | None) -> bool:
    """Publish `models.promoted`; the alias already moved, so a bus outage is logged, not an error."""
    event = ModelPromoted(
        tenant=tenant, data=AliasMove(model_name=name, alias=alias, version=version, previous_version=previous)
    )
    try:
        await bus.publish(event)
    except BusError as exc:
        log.warning("alias %s@%s moved to %d but models.promoted was not published: %s", name, alias, version, exc)
        return False
    return True
