"""The console's routes: the page, its static assets, and the server-rendered curves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from fermion.model_store import Runs
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of

from ..deps import RegistryDep
from ..errors import NotFound
from .curves import render

STATIC = Path(__file__).parent / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def page() -> FileResponse:
    """The page itself (no key needed: it holds no data; everything it shows is fetched with the key)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    """A static asset of the page (a fixed list: nothing else is served)."""
    if name not in ASSETS:
        raise NotFound(f"no console asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.get("/curves.svg")
async def curves(
    request: Request,
    registry: RegistryDep,
    job: Annotated[list[str], Query(min_length=1, max_length=8)],
    metric: Annotated[str, Query(max_length=64)] = "loss",
    tenant: Annotated[str | None, Query(max_length=63)] = None,
    caller: Principal = needs("read"),
) -> Response:
    """The runs' `metric` per epoch as one SVG, overlaid."""
    tenant = tenant_of(request, caller, tenant)
    store = Runs(registry.store)
    runs = [await asyncio.to_thread(store.get, tenant, j) for j in job]
    return Response(render(runs, metric), media_type="image/svg+xml")
