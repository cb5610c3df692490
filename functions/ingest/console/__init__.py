"""The web console, served by ingest at `/console`: one page, the same API keys as the API.

The page (`static/`) is buildless: plain HTML, CSS and JavaScript, no CDN. The key is entered once,
kept in the tab's sessionStorage and sent as `Authorization: Bearer` on every API call, so the
console can do exactly what the key may do. Training curves are SVG rendered here (`curves.py`).
Anything the API returns is shown as text (console.js builds the DOM with textContent/setAttribute,
never from HTML strings), and every ingest answer carries a strict CSP and its friends (`headers.py`).
"""
