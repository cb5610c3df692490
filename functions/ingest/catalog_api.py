"""What a remote user needs besides uploads and trainings: architectures and pushed models.

`POST /v1/models/{name}/versions` takes an ONNX file (and its external data files) and registers
it after `fermion.compile.validate` checked it (onnx only; this function never imports torch).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path, PurePath
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from fermion.model_store import Draft, Lineage, Signature, TensorSpec
from fermion.service.auth import Principal, QuotaExceeded
from fermion.service.auth.http import needs, tenant_of
from fermion.service.responses import error_responses
from fermion.training.catalog import architectures

from .deps import RegistryDep, Settings
from .errors import AUTHENTICATED, BadUpload, InsufficientStorage, Unavailable, UploadTooLarge
from .params import ModelName
from .quotas import check_models

router = APIRouter(tags=["catalog"], responses=error_responses(*AUTHENTICATED))


@router.get("/v1/architectures")
async def list_architectures(caller: Principal = needs("read")) -> list[dict[str, str]]:
    """Every architecture a training may name: the built-ins and installed `fermion.recipes` packages."""
    return architectures()


@router.post(
    "/v1/models/{name}/versions",
    status_code=201,
    responses=error_responses(BadUpload, UploadTooLarge, QuotaExceeded, InsufficientStorage),
)
async def push_model(
    request: Request,
    name: ModelName,
    registry: RegistryDep,
    settings: Settings,
    model: UploadFile = File(..., description="the .onnx file"),
    data: list[UploadFile] = File(default=[], description="external data files, by their names in the graph"),
    labels: str = Form(default="", description="comma-separated class names, in output order"),
    metrics: str = Form(default="", description="a JSON object of held-out metrics (name → number)"),
    origin: str = Form(
        default="", description="a JSON object saying where the graph came from (a converted pipeline, an MLflow run)"
    ),
    tenant: str | None = Form(default=None, description="default: the key's tenant (admin keys only)"),
    caller: Principal = needs("upload"),
) -> dict[str, Any]:
    """Register your own ONNX file as the next version of `name`, after checking it (onnx.checker)."""
    scope = tenant_of(request, caller, tenant)
    said, came_from = _json_form("metrics", metrics), _json_form("origin", origin)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in said.values()):
        raise BadUpload("metrics must map names to numbers")
    try:
        from fermion.compile.validate import RESERVED_NAMES, InvalidModel, validate_onnx
    except ImportError as exc:
        raise Unavailable(
            f"this ingest cannot check ONNX files ({exc}); install it with pip install 'fermion[train]'"
        ) from exc
    await asyncio.to_thread(check_models, registry, scope, name, settings)
    names = _data_names(data, RESERVED_NAMES)  # every name checked before anything is written
    with tempfile.TemporaryDirectory(prefix="fermion-push-") as tmp:
        path = Path(tmp) / "model.onnx"
        total = 0
        for upload, target in [(model, path), *((d, Path(tmp) / n) for d, n in zip(data, names, strict=True))]:
            content = await upload.read(settings.max_upload_bytes + 1)
            total += len(content)
            if total > settings.max_upload_bytes:
                raise UploadTooLarge(
                    f"the model is over the upload limit of {settings.max_upload_bytes} bytes "
                    "(FERMION_MAX_UPLOAD_BYTES on the ingest function)"
                )
            target.write_bytes(content)
        try:
            checked = await asyncio.to_thread(validate_onnx, path)
        except InvalidModel as exc:
            raise BadUpload(f"refused {model.filename}: {exc}".replace(str(Path(tmp)) + "/", "")) from exc
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.inputs],
            outputs=[TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in checked.outputs],
        ),
        labels=[x for x in labels.split(",") if x] if labels else [],
        metrics={k: float(v) for k, v in said.items()},
        lineage=Lineage(recipe={"source": "push", "file": PurePath(model.filename or "model.onnx").name, **came_from}),
        compile_report={"source": "push", "opset": checked.opset, "node_count": checked.node_count, **came_from},
    )
    manifest = await asyncio.to_thread(registry.register, scope, name, checked.files, draft)
    return {
        "name": name,
        "version": manifest.version,
        "files": {f: e.size for f, e in manifest.files.items()},
        "content_sha256": manifest.content_sha256,
    }


def _json_form(field: str, text: str) -> dict[str, Any]:
    """A form field holding a JSON object (empty: none); anything else is a 400 naming the field."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadUpload(f"{field} is not JSON: {exc}") from None
    if not isinstance(value, dict) or len(text) > 64_000:
        raise BadUpload(f"{field} must be a JSON object of at most 64 kB")
    return value


def _data_names(data: list[UploadFile], reserved: frozenset[str]) -> list[str]:
    """The flat file names of the external data parts; a name the registry writes itself is a 400."""
    names = [PurePath(d.filename or "").name for d in data]
    for upload, flat in zip(data, names, strict=True):
        if flat in ("", ".", "..") or flat.startswith("."):
            raise BadUpload(f"invalid external data file name {upload.filename!r}")
        if flat in reserved:
            raise BadUpload(
                f"external data file name {flat!r} is reserved: the registry writes "
                f"{', '.join(sorted(reserved))} itself; rename the file (and its reference in the graph)"
            )
    if len(set(names)) != len(names):
        raise BadUpload(f"external data file names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return names
