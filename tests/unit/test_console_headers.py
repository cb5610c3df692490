"""Every ingest answer carries the console's security headers, and the console's own files leave a
strict CSP nothing to forbid: no inline script, no inline handlers, no markup parsed from strings (issue 25)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.model_store import KeyStore, Registry

STATIC = Path(__file__).resolve().parents[2] / "functions" / "ingest" / "console" / "static"
PATHS = [
    "/console",  # the page
    "/console/static/console.js",
    "/console/static/console.css",
    "/console/static/nope.js",  # 404
    "/console/static/uPlot-1.6.32.iife.min.js",  # vendored
    "/",  # redirects to /console
    "/healthz",
    "/v1/models",  # 401
    "/v1/nowhere",  # 404 from the router
]


@pytest.mark.parametrize("path", PATHS)
async def test_every_answer_carries_the_security_headers(registry: Registry, path: str) -> None:
    app = create_app(lambda: IngestSettings(nats_url="nats://127.0.0.1:1", metrics=False))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        r = await client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff", path
    assert r.headers["x-frame-options"] == "DENY", path
    assert r.headers["referrer-policy"] == "no-referrer", path
    directives = [d.strip().partition(" ") for d in r.headers["content-security-policy"].split(";") if d.strip()]
    policy = {name: value for name, _, value in directives}
    assert policy["default-src"] == "'self'", policy
    assert policy["script-src"] == "'self'", policy  # no 'unsafe-inline', no 'unsafe-eval'
    assert "unsafe" not in policy["style-src"], policy
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'", policy
    assert policy["frame-ancestors"] == "'none'", policy
    assert r.headers.get_list("content-security-policy") == [r.headers["content-security-policy"]], path  # once


def test_the_console_has_no_inline_script_handlers_or_markup_from_strings() -> None:
    html = (STATIC / "index.html").read_text()
    ours = [p for p in sorted(STATIC.glob("*.js")) if not p.name.startswith("uPlot-")]
    assert {p.name for p in ours} >= {"console.js", "dom.js", "charts.js"}
    js = "\n".join(p.read_text() for p in ours)
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a file of ours
    assert re.findall(r"\son[a-z]+\s*=", html) == []  # no onclick= and the like
    assert re.findall(r"\sstyle\s*=", html) == []
    # The page builds its DOM with createElement/textContent/setAttribute: nothing parses a string as HTML.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc"):
        assert sink not in js, sink
    assert re.findall(r"setAttribute\(\s*[\"']on", js) == []
    assert re.findall(r"\.on[a-z]+\s*=", js) == []  # handlers through addEventListener only


# The vendored chart library, as VENDORED.md records it (npm pack uplot@1.6.32): a changed file fails here.
VENDORED = {
    "uPlot-1.6.32.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot-1.6.32.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
}


def test_the_chart_library_is_vendored_pinned_and_served_from_self() -> None:
    import hashlib

    from fermion.functions.ingest.console.routes import ASSETS

    notes = (STATIC / "VENDORED.md").read_text()
    for name, digest in VENDORED.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
        assert digest in notes and name in notes, name
        assert name in ASSETS, name
    assert "MIT" in (STATIC / "uPlot-LICENSE.txt").read_text()
    html = (STATIC / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    files = [u for u in sources if not u.startswith("#")]
    assert files and all(u.startswith("/console/static/") and u.split("/")[-1] in ASSETS for u in files), files
    assert all((STATIC / name).is_file() for name in ASSETS)
    library = (STATIC / "uPlot-1.6.32.iife.min.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in library, sink  # its legend and title take text (textContent): names stay text


async def test_the_ingest_root_redirects_to_the_console(registry: Registry) -> None:
    app = create_app(lambda: IngestSettings(nats_url="nats://127.0.0.1:1", metrics=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        r = await client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/console"
