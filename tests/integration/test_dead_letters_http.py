"""Dead letters over HTTP and from the CLI: an admin sees every one, untenanted ones included (issue 25).

A malformed event that names no tenant is dead-lettered like any other; before, `/v1/dlq` showed it
to no one (its tenant read as "?"), so an operator could neither find nor retry it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fermion.cli import app as cli
from fermion.events import DatasetRef, TrainingRequest, TrainingRequested, subjects
from tests.helpers import api_key, bearer
from tests.integration.secured_ingest import SecuredIngest, secured_ingest

pytestmark = pytest.mark.integration

UNTENANTED = b'{"type": "training.requested", "data": 42}'
ACME_MALFORMED = b'{"type": "training.requested", "tenant": "acme", "data": "no"}'
OTHER = TrainingRequested(
    tenant="other",
    data=TrainingRequest(
        model_name="m", dataset=DatasetRef(name="d", sha256="0" * 64, uri="file:///d.npz", format="npz", size=1)
    ),
)
DRIFT_UNTENANTED = b"\xff not an event"


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredIngest]:
    with secured_ingest(tmp_path_factory.mktemp("dlq-http")) as served:

        async def letters() -> None:  # as the trainer and its rule runners dead-letter them
            bus = await served.admin_bus()
            try:
                for n, (subject, data) in enumerate(
                    [
                        (subjects.TRAINING_REQUESTED, UNTENANTED),
                        (subjects.TRAINING_REQUESTED, ACME_MALFORMED),
                        (subjects.TRAINING_REQUESTED, OTHER.to_json()),
                        (subjects.MODELS_DRIFT_DETECTED, DRIFT_UNTENANTED),
                    ]
                ):
                    await bus.dead_letter(subject, data, f"reason {n}", deliveries=1, msg_id=f"dlq.test.{n}")
                await bus.publish_bytes(subjects.TRAINING_PROGRESS, UNTENANTED, msg_id="malformed-progress")
            finally:
                await bus.close()

        asyncio.run(letters())
        yield served


def _get(ingest: SecuredIngest, key: str, **params: str) -> httpx.Response:
    return httpx.get(f"{ingest.url}/v1/dlq", params=params, headers=bearer(key), timeout=30)


def test_an_admin_sees_every_dead_letter_untenanted_ones_included(ingest: SecuredIngest) -> None:
    letters = _get(ingest, ingest.admin_key).json()
    by_reason = {d["reason"]: d for d in letters}
    assert set(by_reason) == {"reason 0", "reason 1", "reason 2", "reason 3"}
    assert by_reason["reason 0"]["tenant"] is None and by_reason["reason 0"]["job_id"].startswith("seq-")
    assert by_reason["reason 1"]["tenant"] == "acme"  # malformed, but it names its tenant
    assert by_reason["reason 2"]["tenant"] == "other" and by_reason["reason 2"]["job_id"] == OTHER.id
    assert by_reason["reason 3"]["tenant"] is None
    assert by_reason["reason 3"]["subject"] == subjects.MODELS_DRIFT_DETECTED  # not only training's
    untenanted = _get(ingest, ingest.admin_key, untenanted="true").json()
    assert {d["reason"] for d in untenanted} == {"reason 0", "reason 3"}
    assert [d["reason"] for d in _get(ingest, ingest.admin_key, tenant="other").json()] == ["reason 2"]


def test_a_tenant_sees_only_its_own_dead_letters(ingest: SecuredIngest) -> None:
    acme = api_key(ingest.registry, "read", "train", tenant="acme")
    assert [d["reason"] for d in _get(ingest, acme).json()] == ["reason 1"]
    assert _get(ingest, acme, untenanted="true").status_code == 403
    assert _get(ingest, acme, tenant="other").status_code == 403
    for letter in _get(ingest, ingest.admin_key, untenanted="true").json():  # not among acme's: as if absent
        retried = httpx.post(f"{ingest.url}/v1/dlq/{letter['job_id']}/retry", headers=bearer(acme), timeout=30)
        assert retried.status_code == 404, retried.text


def test_the_cli_lists_and_retries_an_untenanted_dead_letter_with_the_admin_key(
    ingest: SecuredIngest, tmp_path: Path
) -> None:
    env = ingest.cli_env(tmp_path / "client")
    listed = CliRunner().invoke(cli, ["jobs", "dlq", "list", "-o", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    (untenanted,) = [d for d in _get(ingest, ingest.admin_key, untenanted="true").json() if d["reason"] == "reason 0"]
    assert untenanted["job_id"] in listed.output
    retried = CliRunner().invoke(cli, ["jobs", "dlq", "retry", untenanted["job_id"]], env=env)
    assert retried.exit_code == 0, retried.output

    async def queued() -> list[bytes]:
        bus = await ingest.admin_bus()
        try:
            return [m.data for m in await bus.queued_jobs()]
        finally:
            await bus.close()

    assert UNTENANTED in asyncio.run(queued())  # published again where it came from


def test_a_malformed_event_on_the_training_log_breaks_no_job_view(ingest: SecuredIngest) -> None:
    answer = httpx.get(
        f"{ingest.url}/v1/jobs/no-such-job/events",
        params={"wait_s": "0.1"},
        headers=bearer(ingest.admin_key),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text  # was a 500: the log's malformed event raised
    assert answer.json()["events"] == []
