"""Jobs (trainings and batch scorings) and dead letters over HTTP, from the event log: list, show, follow,
cancel, retry; a scoring job's predictions.

Job ids are the `training.requested` event ids; every route takes a unique prefix of one. A job
outside the key's tenant is looked for only in the key's tenant (404 as if absent).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from fermion.events import Bus, CancelRequest, StoredMessage, TrainingCancel, parse_event, subjects
from fermion.service.auth import Forbidden, Principal
from fermion.service.auth.http import needs, refused, tenant_of
from fermion.service.jobs import ENDED, DeadLetter, JobStatus, by_prefix, dead_letters, job_statuses
from fermion.service.responses import error_responses

from .deps import BusDep
from .errors import AUTHENTICATED, NotFound, OutcomeUnknown
from .params import Tenant

router = APIRouter(tags=["jobs"], responses=error_responses(*AUTHENTICATED))
TRAINING_LOG = f"{subjects.PREFIX}.training.>"
SCORING_LOG = f"{subjects.PREFIX}.scoring.>"  # batch scoring jobs (issue 26)


async def _job_log(bus: Bus) -> list[StoredMessage]:
    """The training and scoring event logs as one, in stream order."""
    return sorted([*await bus.history(TRAINING_LOG), *await bus.history(SCORING_LOG)], key=lambda m: m.seq)


async def _jobs(bus: Bus, tenant: str) -> dict[str, JobStatus]:
    jobs = job_statuses(await bus.queued_jobs(), await _job_log(bus))
    return {k: j for k, j in jobs.items() if j.tenant == tenant}


def _one(ids: list[str], prefix: str, what: str = "job") -> str:
    try:
        return by_prefix(ids, prefix, what)
    except LookupError as exc:
        raise NotFound(str(exc)) from exc


@router.get("/v1/jobs")
async def list_jobs(
    request: Request,
    bus: BusDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 50,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> list[dict[str, Any]]:
    """The newest `limit` jobs of the tenant, oldest first, with state, epoch, metrics and outcome."""
    jobs = await _jobs(bus, tenant_of(request, caller, tenant))
    return [j.as_dict() for j in list(jobs.values())[-limit:]]


@router.get("/v1/jobs/{job}", responses=error_responses(NotFound))
async def show_job(
    request: Request, job: str, bus: BusDep, tenant: Tenant = None, caller: Principal = needs("read")
) -> dict[str, Any]:
    """One job, by its id or a unique prefix of it."""
    jobs = await _jobs(bus, tenant_of(request, caller, tenant))
    return jobs[_one(list(jobs), job)].as_dict()


@router.get("/v1/jobs/{job}/events", responses=error_responses(NotFound))
async def job_events(
    request: Request,
    job: str,
    bus: BusDep,
    after: Annotated[int, Query(ge=0, description="only events after this stream sequence")] = 0,
    wait_s: Annotated[float, Query(ge=0, le=60, description="long-poll: wait this long for a new event")] = 20.0,
    tenant: Tenant = None,
    caller: Principal = needs("read"),
) -> dict[str, Any]:
    """The job's training.* (or scoring.*) events after `after`, waiting up to `wait_s` for one (a long-poll).

    `ended` is true once the job completed, failed or was cancelled; `next` is the `after` to send
    next time.
    """
    scope = tenant_of(request, caller, tenant)
    log = TRAINING_LOG
    try:
        known = await _jobs(bus, scope)
        job_id = _one(list(known), job)
        log = SCORING_LOG if known[job_id].kind == "scoring" else TRAINING_LOG
    except NotFound:
        if wait_s == 0:
            raise
        job_id = job  # not in the log yet (a sweep's trial before the sweep fans out): wait for it by its id
    found = await _events(bus, scope, job_id, after)
    if not found and wait_s > 0:
        # Subscribe first, then read again: an event cannot slip between the two.
        async with contextlib.aclosing(bus.watch(log)) as live:
            found = await _events(bus, scope, job_id, after)
            if not found:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        async for raw in live:
                            if _names(raw, scope, job_id):  # another tenant's event never wakes us
                                break
                found = await _events(bus, scope, job_id, after)
    state = (await _jobs(bus, scope)).get(job_id)
    nxt = max([after, *(int(f["seq"]) for f in found)])
    ended = state is not None and state.state in ENDED
    return {"job": state.as_dict() if state else None, "events": found, "next": nxt, "ended": ended}


@router.post("/v1/jobs/{job}/cancel", status_code=202, responses=error_responses(NotFound, OutcomeUnknown))
async def cancel_job(
    request: Request, job: str, bus: BusDep, tenant: Tenant = None, caller: Principal = needs("train")
) -> dict[str, Any]:
    """Ask a job to stop: before it starts, or after its current epoch."""
    scope = tenant_of(request, caller, tenant)
    jobs = await _jobs(bus, scope)
    job_id = _one(list(jobs), job)
    await bus.publish(TrainingCancel(tenant=scope, data=CancelRequest(job_id=job_id)))
    return {"job_id": job_id, "state": jobs[job_id].state, "cancel_requested": True}


async def _events(bus: Bus, tenant: str, job_id: str, after: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for m in await _job_log(bus):
        if m.seq <= after:
            continue
        try:
            event = parse_event(m.data)
        except ValidationError:  # anyone's malformed event on the log must not break every job's view
            continue
        if event.tenant == tenant and getattr(getattr(event, "data", None), "job_id", None) == job_id:
            found.append({"seq": m.seq, "event": event.model_dump(mode="json")})
    return found


def _names(raw: bytes, tenant: str, job_id: str) -> bool:
    """Whether a raw event is one of `tenant`'s about `job_id` (an unreadable one is not)."""
    if job_id.encode() not in raw:
        return False
    try:
        event = parse_event(raw)
    except ValueError:
        return False
    return event.tenant == tenant and getattr(getattr(event, "data", None), "job_id", None) == job_id


Untenanted = Annotated[
    bool, Query(description="only the dead letters that name no tenant (an admin key's; shown with tenant null)")
]


async def _letters(
    request: Request, bus: Bus, caller: Principal, tenant: str | None, *, untenanted: bool = False
) -> list[DeadLetter]:
    """The dead letters the caller may see: its tenant's; an admin's, every one (or one tenant's, or none's)."""
    letters = dead_letters(await bus.history(f"{subjects.DLQ_PREFIX}.>"))
    if untenanted:
        if not caller.admin:  # letters that name no tenant may be anyone's: only an operator reads them
            exc = Forbidden(f"key {caller.key_id} is no admin key: it cannot read dead letters that name no tenant")
            refused(request, caller, exc)
            raise exc
        return [d for d in letters if d.tenant is None]
    if tenant is None and caller.admin:
        return letters
    scope = tenant_of(request, caller, tenant)
    return [d for d in letters if d.tenant == scope]


@router.get("/v1/dlq")
async def list_dead_letters(
    request: Request,
    bus: BusDep,
    tenant: Tenant = None,
    untenanted: Untenanted = False,
    caller: Principal = needs("read"),
) -> list[dict[str, Any]]:
    """Dead-lettered messages with the reason and delivery count: the tenant's; an admin key's, every one.

    Each names the subject it came from and its tenant (null: it names none, and only an admin sees it).
    """
    return [d.as_dict() for d in await _letters(request, bus, caller, tenant, untenanted=untenanted)]


@router.post("/v1/dlq/{job}/retry", status_code=202, responses=error_responses(NotFound, OutcomeUnknown))
async def retry_dead_letter(
    request: Request, job: str, bus: BusDep, tenant: Tenant = None, caller: Principal = needs("train")
) -> dict[str, Any]:
    """Publish a dead-lettered message again where it came from (the same job id, a fresh delivery)."""
    letters = await _letters(request, bus, caller, tenant)
    job_id = _one([d.job_id for d in letters], job, "dead-lettered job")
    letter = [d for d in letters if d.job_id == job_id][-1]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    await bus.publish_bytes(
        letter.subject,
        letter.data,
        msg_id=f"{job_id}.retry.{stamp}",
        headers={"Fermion-Retry-Of": str(letter.seq)},
    )
    return {"job_id": job_id, "retried": True}
