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
    "/console/curves.svg?job=a",  # 401: no key
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
    js = (STATIC / "console.js").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a file of ours
    assert re.findall(r"\son[a-z]+\s*=", html) == []  # no onclick= and the like
    assert re.findall(r"\sstyle\s*=", html) == []
    # The page builds its DOM with createElement/textContent/setAttribute: nothing parses a string as HTML.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc"):
        assert sink not in js, sink
    assert re.findall(r"setAttribute\(\s*[\"']on", js) == []
    assert re.findall(r"\.on[a-z]+\s*=", js) == []  # handlers through addEventListener only
