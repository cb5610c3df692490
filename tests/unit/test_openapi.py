"""The ingest function's OpenAPI document says what its routes answer (Schemathesis checks it: test_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fermion.events.envelope import NAME_PATTERN
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.settings import IngestSettings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(lambda: IngestSettings(nats_url="nats://127.0.0.1:1", metrics=False))
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{m.upper()} {p}", op) for p, ops in document["paths"].items() for m, op in ops.items()]


def test_every_authenticated_operation_documents_the_key_and_its_refusals(document: dict[str, Any]) -> None:
    public = {"GET /healthz", "GET /readyz"}
    for label, op in _operations(document):
        if label in public:
            assert "security" not in op, label
            continue
        assert op["security"] == [{"APIKey": []}], label
        assert {"401", "403", "503"} <= set(op["responses"]), label
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"], label
    assert document["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `Authorization: Bearer fmn_...`",
    }


def test_errors_are_documented_with_the_body_the_handlers_send(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 body, which we never send
    assert schemas["ErrorBody"]["required"] == ["error"]
    for label, op in _operations(document):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and label != "GET /readyz":
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody", (label, status)
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in op["responses"], label


def test_names_and_versions_in_paths_and_queries_carry_their_constraints(document: dict[str, Any]) -> None:
    for label, op in _operations(document):
        for param in op.get("parameters", []):
            schema = param["schema"]
            if param["name"] in ("name", "alias", "tenant", "model"):
                pattern = schema.get("pattern") or next(s["pattern"] for s in schema["anyOf"] if "pattern" in s)
                assert pattern == NAME_PATTERN, (label, param["name"])
            if param["name"] == "version":  # an optional one (a filter) carries it in its anyOf, as names do
                minimum = schema.get("minimum") or next(s["minimum"] for s in schema["anyOf"] if "minimum" in s)
                assert minimum == 1, label
