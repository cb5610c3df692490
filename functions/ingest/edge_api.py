"""POST /v1/models/{name}/edge: a registered version as a signed edge bundle, built here and downloaded.

The build (prune, fine-tune, quantise, ORT format, judge, sign with the platform's key) is torch,
and this process never imports torch: it runs `edge_build.py` as a child process with the
function's own store and signing settings, one build at a time per process, and answers with
the archive. A deployment without torch answers 501.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from fermion.events.envelope import NAME_PATTERN
from fermion.service.auth import Principal
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses

from .deps import RegistryDep, Settings
from .edge_build import refusal
from .errors import AUTHENTICATED, BadRequest, IngestError, NotBuilt, NotFound, Unavailable
from .params import ModelName, Tenant
from .settings import IngestSettings

router = APIRouter(prefix="/v1/models", tags=["edge"], responses=error_responses(*AUTHENTICATED))
BUILD_TIMEOUT_S = 900.0  # a fine-tune on a CPU; past it the child is killed and the request answered 503
TAR = "application/x-tar"
# The child's outcome kinds (edge_build.KINDS), as answers.
ANSWERS: dict[str, type[IngestError]] = {
    "refused": BadRequest,
    "invalid": BadRequest,
    "not_found": NotFound,
    "unavailable": Unavailable,
    "missing": NotBuilt,
}


class EdgeRequest(BaseModel):
    """POST /v1/models/{name}/edge: which version, what to do to it, what it must still achieve."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="default: the version `alias` names")
    alias: str | None = Field(default=None, pattern=NAME_PATTERN, max_length=63, description="default: latest")
    prune: float = Field(default=0.0, ge=0.0, le=0.95, description="fraction of weights to prune")
    quantize: Literal["none", "int8"] = "none"
    format: Literal["ort", "onnx"] = Field(default="ort", description="ort (minimal builds) or onnx")
    accuracy_budget: float | None = Field(
        default=0.01, ge=0.0, le=1.0, description="max accuracy drop vs the served version; null: ship unmeasured"
    )
    max_bytes: int | None = Field(default=None, ge=1, description="refuse a bundle larger than this")
    finetune_epochs: int = Field(default=3, ge=0, le=100, description="fine-tune epochs after pruning")


@router.post(
    "/{name}/edge",
    response_class=Response,
    responses={
        200: {"content": {TAR: {"schema": {"type": "string", "format": "binary"}}}, "description": "the bundle"},
        **error_responses(BadRequest, NotFound, NotBuilt),
    },
)
async def export_edge(
    request: Request,
    name: ModelName,
    body: EdgeRequest,
    settings: Settings,
    registry: RegistryDep,
    tenant: Tenant = None,
    caller: Principal = needs("train"),
) -> Response:
    """Build a version's signed edge bundle (pruned, quantised, ORT format, with its runner); the tar archive.

    Refused (400, saying why) when its accuracy or size misses the budgets.
    """
    tenant = tenant_of(request, caller, tenant)
    if body.version is not None and body.alias is not None:
        raise BadRequest("give a version or an alias, not both")
    ref = f"{name}:{body.version}" if body.version else f"{name}@{body.alias}" if body.alias else name
    # Resolved here (no torch): a missing version is a 404 without a child process, and the build
    # takes the version the alias named at the time of the request.
    manifest = await asyncio.to_thread(registry.lookup, tenant, ref)
    if (why := refusal(manifest)) is not None:  # known from the manifest: no child process for it
        raise BadRequest(why)
    options = body.model_dump(exclude={"version", "alias"})
    job = {"tenant": tenant, "ref": f"{name}:{manifest.version}", "options": options}
    async with _one_build(request):
        archive = await _build(settings, job)
    filename = f"{name}.edge.tar"
    return Response(archive, media_type=TAR, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _one_build(request: Request) -> asyncio.Lock:
    # Fine-tuning takes every core it is given: builds queue rather than run side by side.
    state = request.app.state
    if getattr(state, "edge_builds", None) is None:
        state.edge_builds = asyncio.Lock()
    lock: asyncio.Lock = state.edge_builds
    return lock


async def _build(settings: IngestSettings, job: dict[str, Any]) -> bytes:
    """Run edge_build.py in a child process; the archive, or the error it reported."""
    env = {**os.environ, "FERMION_HOME": str(settings.home)}
    if settings.store_url:
        env["FERMION_STORE_URL"] = settings.store_url
    with tempfile.TemporaryDirectory(prefix="fermion-edge-") as tmp:
        out = Path(tmp) / "bundle.tar"
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fermion.functions.ingest.edge_build",
            str(out),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            stdout, stderr = await asyncio.wait_for(child.communicate(json.dumps(job).encode()), BUILD_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise Unavailable(f"the edge build took longer than {BUILD_TIMEOUT_S:.0f}s and was stopped") from None
        lines = stdout.decode(errors="replace").strip().splitlines()
        try:
            outcome: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except ValueError:
            outcome = {}
        if outcome.get("ok"):
            return out.read_bytes()
        if "error" in outcome:
            raise ANSWERS.get(outcome["error"], Unavailable)(outcome.get("message", "edge build failed"))
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise IngestError(f"the edge build failed: {tail[0]}")
