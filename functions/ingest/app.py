"""The ingest function: dataset uploads and training requests, turned into events.

A request is accepted only once its event is durably in JetStream; if NATS or the store is
down the client gets a 503 and nothing half-done is left behind (datasets are content-addressed,
so a retried upload writes nothing new).

`create_app` builds it; `app` (built on first use) is the process's, for uvicorn and the Lambda
handler. Nothing reads settings at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import PurePath
from typing import Any, Literal

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fermion.events import (
    Bus,
    BusError,
    DatasetRef,
    DatasetUploaded,
    Gate,
    ParamSpec,
    Recipe,
    SweepRequest,
    TrainingRequest,
    TrainingRequested,
    TrainingSweep,
    derive_id,
    upload_id,
)
from fermion.events.envelope import Name
from fermion.model_store import (
    DatasetStore,
    InvalidName,
    KeyStore,
    ObjectStore,
    StoreError,
    check_name,
    dataset_format,
    normal_name,
)
from fermion.model_store.features import Task
from fermion.service import endpoints
from fermion.service.auth import Auditor, Authenticator, Principal, QuotaExceeded
from fermion.service.auth.http import SecurityState, also_needs, needs, tenant_of
from fermion.service.observability import logs
from fermion.service.observability.ingest import ingest_metrics
from fermion.service.observability.readiness import Readiness, store_check
from fermion.service.responses import HTTPError, document_validation, error_responses, install_error_handlers, translate

from .canary_api import router as canary_router
from .catalog_api import router as catalog_router
from .console.headers import SecurityHeaders
from .console.routes import entry as console_entry
from .console.routes import router as console_router
from .datasets import UploadedDataset, check_table, shown, upload_limits, validate_dataset
from .datasets_api import DatasetSelector, find_dataset
from .datasets_api import router as datasets_router
from .deps import BusDep, Datasets, RegistryDep, Settings, close_bus, get_bus, get_keys, get_registry
from .drift_api import router as drift_router
from .edge_api import router as edge_router
from .errors import (
    AUTHENTICATED,
    TRANSLATIONS,
    VALIDATION_STATUS,
    BadRequest,
    BadUpload,
    InsufficientStorage,
    NotFound,
    OutcomeUnknown,
    Unavailable,
    UploadTooLarge,
)
from .federations import router as federations_router
from .idempotency import IdempotencyKey, event_id
from .jobs_api import router as jobs_router
from .keys_api import router as keys_router
from .label_columns import resolve_labels
from .labels import router as labels_router
from .pictures import image_limits
from .pipelines_api import router as pipelines_router
from .quotas import charge_upload, check_models, check_queued_jobs
from .registry_api import router as registry_router
from .runs_api import router as runs_router
from .runs_api import sweeps_router
from .scorings_api import router as scorings_router
from .serving_api import router as serving_router
from .settings import IngestSettings, get_settings
from .teachers import check_teacher
from .upload_urls import router as upload_urls_router

log = logging.getLogger("fermion.ingest")
# What a request can be refused with: our errors, and the lower layers' that TRANSLATIONS maps.
REFUSALS: tuple[type[Exception], ...] = (HTTPError, *(row.theirs for row in TRANSLATIONS))
# Bytes a multipart upload may carry beyond the file itself: framing and the small form fields.
FORM_OVERHEAD = 1 << 20


class TrainingSpec(BaseModel):
    """POST /v1/trainings."""

    model_config = ConfigDict(extra="forbid")

    model_name: Name
    dataset: DatasetSelector
    recipe: Recipe = Recipe()
    tenant: Name | None = Field(default=None, description="default: the key's tenant (another needs an admin key)")


class Accepted(BaseModel):
    """202 of POST /v1/trainings: the job id is the event id."""

    job_id: str
    model_name: str
    dataset: DatasetRef
    label_column: str


@contextlib.asynccontextmanager
async def _closing_bus(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown (a server's stop, a client's exit) the audit records still going out, then the bus closes."""
    yield
    await app.state.security.auditor.drain()
    await close_bus()


def create_app(settings: Callable[[], IngestSettings] = get_settings) -> FastAPI:
    """The ingest app over `settings()` (read here once, for the upload route's body limit)."""
    app = FastAPI(title="Fermion ingest", lifespan=_closing_bus)
    if settings is not get_settings:
        app.dependency_overrides[get_settings] = settings

    async def audit_bus() -> Bus:
        override = app.dependency_overrides.get(get_bus)  # tests hand in a connected bus
        return override() if override is not None else await get_bus(settings())

    def keys() -> KeyStore:
        return app.dependency_overrides.get(get_keys, get_keys)()

    app.state.security = SecurityState(Authenticator(keys, settings(), tenant=settings().tenant), Auditor(audit_bus))
    install_error_handlers(app, log, TRANSLATIONS, validation_status=VALIDATION_STATUS)
    generate_openapi = app.openapi
    app.openapi = lambda: document_validation(generate_openapi(), VALIDATION_STATUS)  # type: ignore[method-assign]
    app.add_api_route("/healthz", healthz, methods=["GET"])

    async def nats_check() -> None:
        if not (await audit_bus()).connected:
            raise Unavailable("not connected to NATS (reconnecting)")

    def store() -> ObjectStore:
        return app.dependency_overrides.get(get_registry, get_registry)().store

    app.state.readiness = Readiness(
        "ingest",
        {"store": store_check(store), "nats": nats_check},
        (StoreError, Unavailable, BusError),
        ingest_metrics().registry if settings().metrics else None,
    )
    app.add_api_route("/readyz", readyz, methods=["GET"], responses={503: {"model": NotReady}})
    # The route's body limit stops an oversized upload as it arrives (by Content-Length, or counting a
    # chunked body) instead of after it has been spooled to disk; the handler then holds the file
    # itself to `max_upload_bytes`.
    limit = settings().max_upload_bytes + FORM_OVERHEAD
    app.add_api_route(
        "/v1/datasets",
        upload_dataset,
        methods=["POST"],
        status_code=201,
        max_body_size=limit,
        responses=error_responses(*UPLOAD_ERRORS),
    )
    jobs = error_responses(*AUTHENTICATED, BadRequest, NotFound, QuotaExceeded, OutcomeUnknown)
    app.add_api_route("/v1/trainings", request_training, methods=["POST"], status_code=202, responses=jobs)
    app.add_api_route("/v1/sweeps", request_sweep, methods=["POST"], status_code=202, responses=jobs)
    app.include_router(datasets_router)  # issue 26: profiles, GET /v1/datasets[/{name}]
    app.include_router(scorings_router)  # issue 26: batch scoring
    app.include_router(upload_urls_router)  # datasets past Lambda's 6 MB request limit: a presigned PUT
    app.include_router(catalog_router)  # before the registry's /v1/models/{name} routes
    app.include_router(registry_router)
    app.include_router(canary_router)
    app.include_router(edge_router)
    app.include_router(jobs_router)
    app.include_router(keys_router)
    app.include_router(federations_router)
    app.include_router(labels_router)  # issue 17: ground truth for online accuracy
    app.include_router(pipelines_router)  # issue 31: upload and drift rules
    app.include_router(drift_router)
    app.include_router(serving_router)  # issue 27: per-version request rate, latency, errors, accuracy
    app.include_router(runs_router)
    app.include_router(sweeps_router)
    app.include_router(console_router)
    app.include_router(console_entry)  # `/` answers with the console
    app.add_middleware(SecurityHeaders)  # CSP, nosniff, no framing, no Referer: on every answer (issue 25)
    endpoints.install(app, settings(), ingest_metrics().registry if settings().metrics else None, function="ingest")
    return app


# An upload: a file we cannot read or a bad name, over the limit (the route's body limit answers 413
# too), over the daily quota, the store full, the event unconfirmed.
UPLOAD_ERRORS = (*AUTHENTICATED, BadUpload, UploadTooLarge, QuotaExceeded, OutcomeUnknown, InsufficientStorage)


class NotReady(BaseModel):
    """503 of /readyz: what is down, and why."""

    ready: bool = False
    problems: dict[str, str]


async def healthz() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


async def readyz(request: Request) -> Any:
    """Ready to take requests: the store and NATS answer (a probe: no key; 503 naming what is down)."""
    if problems := await request.app.state.readiness.problems():
        return JSONResponse({"ready": False, "problems": problems}, status_code=503)
    return {"ready": True}


async def upload_dataset(
    request: Request,
    datasets: Datasets,
    settings: Settings,
    bus: BusDep,
    file: UploadFile = File(..., description="an .npz with arrays x and y, a .csv with a header, or a .parquet"),
    name: str | None = Form(default=None, description="dataset name; defaults to the file's stem"),
    tenant: str | None = Form(default=None, description="default: the key's tenant (another needs an admin key)"),
    label_column: str | None = Form(default=None, description="tables: the label column the profile assumes"),
    task: Literal["classification", "regression"] | None = Form(default=None, description="tables: override"),
    caller: Principal = needs("upload"),
) -> UploadedDataset:
    """Store a dataset by sha256 and announce it with `datasets.uploaded`; a table is profiled first.

    A table no model could train on (no usable column, a label with one class) is refused with a 400
    naming why, and nothing is stored.
    """
    scope = tenant_of(request, caller, tenant)
    try:
        ref = await _upload(request, datasets, settings, bus, file, name, scope, (label_column, task))
    except REFUSALS as exc:
        if settings.metrics:
            status = exc.status if isinstance(exc, HTTPError) else translate(exc, TRANSLATIONS).status
            ingest_metrics().refusals.labels("/v1/datasets", type(exc).__name__, str(status)).inc()
        raise
    if settings.metrics:
        ingest_metrics().uploads.labels(ref.format).inc()
        ingest_metrics().upload_bytes.labels(ref.format).inc(ref.size)
    return shown(scope, ref)


async def _upload(
    request: Request,
    datasets: DatasetStore,
    settings: IngestSettings,
    bus: Bus,
    file: UploadFile,
    name: str | None,
    tenant: str,
    assume: tuple[str | None, Task | None] = (None, None),
) -> UploadedDataset:
    filename = PurePath(file.filename or "").name
    fmt = dataset_format(PurePath(filename).suffix)
    if fmt is None:
        raise BadUpload(
            f"unsupported file {filename!r}: upload an .npz (arrays x, y), a .csv with a header, a .parquet, "
            "or a .zip/.tar of pictures"
        )
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLarge(
            f"upload exceeds the limit of {settings.max_upload_bytes} bytes "
            "(FERMION_MAX_UPLOAD_BYTES on the ingest function)"
        )
    # A name given is taken as given (lower case) and checked; one taken from the file is normalised.
    dataset_name = name.lower() if name else normal_name(PurePath(filename).stem)
    try:
        check_name("dataset", dataset_name)
        check_name("tenant", tenant)
    except InvalidName as exc:
        raise BadUpload(str(exc)) from exc
    # Off the event loop: reading a large upload through must not stall health checks and other requests.
    await asyncio.to_thread(validate_dataset, data, fmt, upload_limits(settings), image_limits(settings))
    profile = await asyncio.to_thread(check_table, data, fmt, *assume)  # refused here: nothing stored yet
    await asyncio.to_thread(charge_upload, datasets.store, tenant, len(data), settings)
    stored = await asyncio.to_thread(datasets.put, tenant, dataset_name, data, fmt)
    if profile is not None:  # before the announcement: whoever reacts to it finds the profile
        await asyncio.to_thread(datasets.put_profile, stored, profile.model_dump_json().encode())
    ref = DatasetRef(name=dataset_name, sha256=stored.sha256, uri=stored.uri, format=fmt, size=stored.size)
    await bus.publish(DatasetUploaded(id=upload_id(tenant, dataset_name, stored.sha256), tenant=tenant, data=ref))
    return UploadedDataset(**ref.model_dump(), profile=profile)


async def request_training(
    request: Request,
    spec: TrainingSpec,
    datasets: Datasets,
    registry: RegistryDep,
    settings: Settings,
    bus: BusDep,
    idempotency_key: IdempotencyKey = None,
    caller: Principal = needs("train"),
) -> Accepted:
    """Publish `training.requested` for a stored dataset; the job id is the event id.

    A training registers a new immutable version; it never moves what a bare model name serves.
    """
    tenant = tenant_of(request, caller, spec.tenant)
    ref = await asyncio.to_thread(find_dataset, datasets, tenant, spec.dataset)
    (recipe,) = await asyncio.to_thread(resolve_labels, datasets, tenant, ref, [spec.recipe])
    recipe = await asyncio.to_thread(check_teacher, registry, datasets, tenant, ref, recipe)  # issue 30
    await asyncio.to_thread(check_models, registry, tenant, spec.model_name, settings)
    await check_queued_jobs(bus, tenant, settings)
    event = TrainingRequested(
        id=event_id(tenant, "trainings", idempotency_key),
        tenant=tenant,
        data=TrainingRequest(model_name=spec.model_name, dataset=ref, recipe=recipe),
    )
    await bus.publish(event)
    return Accepted(
        job_id=event.id, model_name=spec.model_name, dataset=shown(tenant, ref), label_column=recipe.label_column
    )


class SweepSpec(BaseModel):
    """POST /v1/sweeps."""

    model_config = ConfigDict(extra="forbid")

    model_name: Name
    dataset: DatasetSelector
    trials: list[Recipe] = Field(default=[], max_length=64, description="a grid's recipes, one per trial")
    metric: str = Field(default="macro_f1", min_length=1, max_length=64)
    gate: Gate | None = Field(default=None, description="promote the best trial through this gate (needs `promote`)")
    tenant: Name | None = Field(default=None, description="default: the key's tenant (another needs an admin key)")
    search: Literal["grid", "random", "tpe"] = "grid"
    n_trials: int = Field(default=0, ge=0, le=64, description="random/tpe: how many trials")
    space: dict[str, ParamSpec] = Field(default={}, description="random/tpe: the recipe fields searched")
    base: Recipe = Field(default=Recipe(), description="random/tpe: the recipe the searched fields vary")
    parallel: int = Field(default=4, ge=1, le=64, description="trials in flight at once")
    prune: bool = Field(default=True, description="stop trials behind the median (Optuna's median pruner)")


async def request_sweep(
    request: Request,
    spec: SweepSpec,
    datasets: Datasets,
    registry: RegistryDep,
    settings: Settings,
    bus: BusDep,
    idempotency_key: IdempotencyKey = None,
    caller: Principal = needs("train"),
) -> dict[str, object]:
    """Publish `training.sweep`: the trials fan out across the trainers; with a gate, the best is promoted."""
    tenant = tenant_of(request, caller, spec.tenant)
    if spec.gate is not None:
        also_needs(request, caller, "promote")  # a gate moves an alias
    ref = await asyncio.to_thread(find_dataset, datasets, tenant, spec.dataset)
    trials = await asyncio.to_thread(resolve_labels, datasets, tenant, ref, [spec.base, *spec.trials])
    trials = [await asyncio.to_thread(check_teacher, registry, datasets, tenant, ref, t) for t in trials]
    await asyncio.to_thread(check_models, registry, tenant, spec.model_name, settings)
    await check_queued_jobs(bus, tenant, settings)
    try:
        swept = SweepRequest(
            model_name=spec.model_name, dataset=ref, trials=trials[1:], metric=spec.metric, gate=spec.gate,
            search=spec.search, n_trials=spec.n_trials, space=spec.space, base=trials[0], parallel=spec.parallel,
            prune=spec.prune,
        )  # fmt: skip
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    event = TrainingSweep(id=event_id(tenant, "sweeps", idempotency_key), tenant=tenant, data=swept)
    await bus.publish(event)
    return {
        "sweep_id": event.id,
        "trial_job_ids": [derive_id(event.id, i) for i in range(swept.size)],
        "winner_job_id": derive_id(event.id, "winner"),
        "search": swept.search,
    }


def __getattr__(name: str) -> Any:
    # `app` is built on first use (uvicorn's `fermion.functions.ingest.app:app`, the Lambda handler).
    if name == "app":
        settings = get_settings()
        logs.configure("ingest", json_lines=settings.log_format == "json")
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
