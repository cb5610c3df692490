"""The web console, served by ingest at `/console` (and `/` redirects there): the same API keys as the API.

The page (`static/`) is buildless: plain HTML, CSS and JavaScript modules, no CDN. The key is entered
once, kept in the tab's sessionStorage and sent as `Authorization: Bearer` on every API call, so the
console can do exactly what the key may do. Charts are drawn in the browser by uPlot, vendored and
pinned in `static/` (VENDORED.md). Anything the API returns is shown as text (the scripts build the
DOM with textContent/setAttribute, never from HTML strings), and every ingest answer carries a strict
CSP and its friends (`headers.py`).
"""
