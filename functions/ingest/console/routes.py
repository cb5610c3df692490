"""The console's routes: the page, its static assets (ours and the vendored uPlot), and `/` pointing at it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ..errors import NotFound

STATIC = Path(__file__).parent / "static"
UPLOT = "1.6.32"  # static/VENDORED.md: where it came from, its digests, how to upgrade
JS, CSS = "text/javascript", "text/css"
ASSETS = {
    "console.js": JS,
    "dom.js": JS,
    "charts.js": JS,
    "models.js": JS,
    "runs.js": JS,
    "operations.js": JS,
    "rollouts.js": JS,
    "console.css": CSS,
    f"uPlot-{UPLOT}.iife.min.js": JS,
    f"uPlot-{UPLOT}.min.css": CSS,
    "uPlot-LICENSE.txt": "text/plain",
}
router = APIRouter(prefix="/console", include_in_schema=False)
entry = APIRouter(include_in_schema=False)


@entry.get("/")
async def root() -> RedirectResponse:
    """Ingest's root is the console (a person who opens the bare URL lands on something)."""
    return RedirectResponse("/console", status_code=307)


@router.get("")
async def page() -> FileResponse:
    """The page itself (no key needed: it holds no data; everything it shows is fetched with the key)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    """A static asset of the page (a fixed list: nothing else is served)."""
    if name not in ASSETS:
        raise NotFound(f"no console asset {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})
