"""The console over a real stack, fed hostile text the way an attacker can: events published on the bus
(raw trainings whose ids break out of an attribute — refused at parse since event ids have a charset,
so they land in the dead-letter queue —, a label column and dead letters full of markup) and records
written to the store (run records and a signed version with hostile ids, metric names, parameters and
labels). Every page is opened in Debian's chromium; no script may run (issue 25)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from fermion.client import Client
from fermion.events import Bus, DatasetRef, Recipe, TrainingRequest, TrainingRequested, subjects
from fermion.infra import Stack
from fermion.model_store import EpochRecord, Lineage, Registry, RunRecord, Runs, Signer, open_store
from tests.helpers import linear_draft, linear_onnx, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
# Each sets window.__xss if it ever runs. Ids the trainer takes stay within what a NATS subject and a
# run record's key allow (no spaces, no slash); the rest reach the console through the store or the DLQ.
ATTR = 'a"onfocus="window.__xss=1"autofocus="'  # issue 25's finding: out of an attribute
IMG = '"><img src=x onerror=window.__xss=2>'
SCRIPT = "</script><script>window.__xss=3</script>"
JS = "javascript:window.__xss=4"
# The failing training's id: quotes of every kind, an entity that must not be decoded, a stray `<`
# (nats-py refuses a `>` inside a subject token, and the trainer subscribes to one named by the id).
TICK = "`'\"label-job&amp;<i"
LABEL = "<svg onload=window.__xss=6>"
LETTER = 'd"onfocus="window.__xss=8"autofocus="'  # a dead letter's job id
EPOCHS = '2" onfocus="window.__xss=7" autofocus="'  # a parameter the page once put in an attribute unescaped
MODEL = "hostile"
TRAINED, FAILED = "hostile-trained", "hostile-failed"  # the real trainings' ids: within the id charset


def _ref(uploaded: dict[str, Any]) -> DatasetRef:
    """The reference a training takes, from an upload's answer (which also carries the table's profile)."""
    return DatasetRef.model_validate({k: v for k, v in uploaded.items() if k in DatasetRef.model_fields})


def _datasets(client: Client, tmp_path: Path) -> tuple[DatasetRef, DatasetRef]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    buf = io.BytesIO()
    np.savez(buf, x=(rng.normal(size=(60, 4)) + y[:, None] * 3).astype(np.float32), y=y)
    (tmp_path / "blobs.npz").write_bytes(buf.getvalue())
    (tmp_path / "rows.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    npz = _ref(client.upload(tmp_path / "blobs.npz", name="blobs"))
    csv = _ref(client.upload(tmp_path / "rows.csv", name="rows"))
    return npz, csv


async def _publish(stack: Stack, npz: DatasetRef, csv: DatasetRef) -> None:
    """What someone holding bus credentials can send: hostile trainings (ingest's role), a dead letter (trainer's)."""
    url = stack.settings.nats_url
    ingest = await Bus.from_settings(stack.identity.bus_settings("ingest", url), name="hostile-ingest")
    trainer = await Bus.from_settings(stack.identity.bus_settings("trainer", url), name="hostile-trainer")
    try:
        # An id that breaks out of an attribute, sent as raw bytes past our own schema: the trainer refuses
        # it at parse (event ids have a charset) and dead-letters it with the reason.
        good = TrainingRequest(model_name=MODEL, dataset=npz, recipe=Recipe(epochs=2, label_column=IMG))
        await ingest.publish_bytes(
            subjects.TRAINING_REQUESTED, _with_id(TrainingRequested(data=good), ATTR), msg_id="a1"
        )
        # Trains and registers version 1 (its label column is only shown: an .npz has none).
        await ingest.publish(TrainingRequested(id=TRAINED, data=good))
        # Fails: the csv has no such column, and the reason (a failed run, a dead letter) quotes it.
        bad = TrainingRequest(model_name=MODEL, dataset=csv, recipe=Recipe(epochs=1, label_column=LABEL))
        await ingest.publish(TrainingRequested(id=FAILED, data=bad))
        for job in (SCRIPT, LETTER):
            letter = _with_id(TrainingRequested(data=TrainingRequest(model_name=MODEL, dataset=npz)), job)
            await trainer.dead_letter(
                subjects.TRAINING_REQUESTED, letter, f"{IMG} {SCRIPT}", deliveries=ATTR, msg_id=job
            )
    finally:
        await ingest.close()
        await trainer.close()


def _with_id(event: TrainingRequested, hostile: str) -> bytes:
    """The event as raw bytes, its id replaced: what a producer that skips our schema can send."""
    doc = json.loads(event.to_json())
    doc["id"] = hostile
    return json.dumps(doc).encode()


def _store_writes(stack: Stack, npz: DatasetRef) -> None:
    """What a recipe naming its own metrics, or a writer to the bucket, can leave: runs and a signed version."""
    store = open_store(stack.store_url)
    hostile_metrics = {IMG: 0.5, ATTR: 0.25, SCRIPT: 0.75, "accuracy": 0.9}
    epochs = [EpochRecord(epoch=e, loss=1.0 / e, metrics=hostile_metrics) for e in (1, 2)]
    for job, status in ((IMG, "failed"), (JS, "completed"), (ATTR, "completed"), (TICK, "failed")):
        Runs(store).put(
            RunRecord(
                job_id=job,
                tenant="default",
                model_name=MODEL,
                status=status,  # type: ignore[arg-type]
                parameters={"epochs": EPOCHS, IMG: SCRIPT, "label_column": TICK},
                dataset=npz.model_dump(mode="json"),
                epochs=epochs,
                metrics=hostile_metrics,
                version=None,
                error=(f"{SCRIPT} {IMG} {ATTR}" if job == IMG else f"no label column {LABEL!r}")
                if status == "failed"
                else None,
            )
        )
    signer = Signer.from_file(stack.identity.signing_key)
    registry = Registry(store, stack.settings.home / "hostile-cache", signer=signer)
    draft = linear_draft(lineage=Lineage(training_event_id=JS, dataset_uri=IMG, recipe={"label_column": SCRIPT}))
    draft = draft.model_copy(update={"metrics": hostile_metrics, "labels": [IMG, ATTR, SCRIPT]})
    registry.register("default", MODEL, {"model.onnx": linear_onnx()}, draft)


def _run_status(stack: Stack, headers: dict[str, str], job: str) -> Any:
    r = httpx.get(f"{stack.settings.ingest_url}/v1/runs/{quote(job, safe='')}", headers=headers, timeout=10)
    return r.json().get("status") if r.status_code == 200 else None


# Recorded before any script of the page runs: a CSP violation, and whether a dialog was opened.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
"""


def _inert(page: Any, dialogs: list[str], where: str) -> None:
    """No injected script ran on this page, none was even tried against the CSP, no dialog opened."""
    ran = page.evaluate("() => [window.__xss, window.__csp]")
    assert ran[0] is None, f"{where}: injected script ran (window.__xss = {ran[0]})"
    assert ran[1] == [], f"{where}: CSP violations {ran[1]}"
    assert dialogs == [], f"{where}: dialogs {dialogs}"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup installs it)")
def test_hostile_ids_names_labels_metrics_and_errors_stay_text_on_every_page(stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    s, key = stack.settings, stack.identity.admin_key()
    assert key is not None
    headers = {"Authorization": f"Bearer {key}"}
    with Client.from_settings(s) as client:
        npz, csv = _datasets(client, tmp_path)
    asyncio.run(_publish(stack, npz, csv))
    _store_writes(stack, npz)
    wait_until(lambda: _run_status(stack, headers, TRAINED) == "completed", 120, "the training")
    wait_until(lambda: _run_status(stack, headers, FAILED) == "failed", 60, "the hostile label column's failure")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.add_init_script(WATCH)
        page.goto(f"{s.ingest_url}/console")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("link", name=MODEL, exact=True)).to_be_visible()

        def visit(where: str) -> None:
            """Open a console link afresh, as a victim following a bookmark or a sent link would."""
            page.goto("about:blank")
            page.goto(f"{s.ingest_url}/console#{where}")

        # The model: hostile metric names as column heads and in a comparison, a hostile training job.
        visit(f"model/{MODEL}")
        expect(page.locator("#versions tbody tr")).to_have_count(2)
        page.wait_for_timeout(300)  # an injected autofocus or onerror fires within a frame or two
        _inert(page, dialogs, "model page")
        heads = page.locator("#versions thead th").all_inner_texts()
        assert {IMG, ATTR, SCRIPT} <= set(heads), heads
        expect(page.locator("#versions")).to_contain_text(JS[:12])
        page.get_by_label("compare version 1").check()
        page.get_by_label("compare version 2").check()
        page.get_by_role("button", name="Compare selected versions").click()
        rows = page.locator("#version-comparison tbody th").all_inner_texts()
        assert {IMG, ATTR, SCRIPT} <= set(rows), rows
        _inert(page, dialogs, "version comparison")

        # Runs: every hostile job id intact in its checkbox's label, the failure reasons as text.
        visit("runs")
        expect(page.locator("#runs tbody tr")).to_have_count(6)
        page.wait_for_timeout(300)
        _inert(page, dialogs, "runs page")
        for job in (ATTR, IMG, JS, TICK):
            page.get_by_label(f"plot run {job}", exact=True).check()
        expect(page.locator("#runs")).to_contain_text(f"{SCRIPT} {IMG} {ATTR}")  # whole: never cut
        expect(page.locator("#runs")).to_contain_text(repr(LABEL))
        page.get_by_role("button", name="Plot selected runs").click()
        # the loss chart's legend: the epoch, then each run's training loss (these records hold no validation loss)
        legend = page.locator("#charts figure.chart").first.locator(".u-legend .u-series")
        expect(legend).to_have_count(1 + 4)
        names = set(legend.locator(".u-label").all_text_contents())
        assert {f"{MODEL} {job} training" for job in (ATTR, IMG, JS, TICK)} <= names, names  # whole, as text
        _inert(page, dialogs, "plotted runs")

        # Each run's own page: its id as the heading, parameters and error shown as written.
        for job in (ATTR, IMG, JS, TICK):
            visit(f"run/{quote(job, safe='')}")
            expect(page.locator("#view h2")).to_have_text(f"Run {job}")
            expect(page.locator("#charts figure.chart")).to_have_count(1 + 4)  # loss, then each metric
            page.wait_for_timeout(300)
            _inert(page, dialogs, f"run page of {job!r}")
            if job == TICK:
                expect(page.locator("#view .error")).to_contain_text(repr(LABEL))
            if job == IMG:
                expect(page.locator("#parameters")).to_contain_text(EPOCHS)
                expect(page.locator("#view .error")).to_have_text(f"{SCRIPT} {IMG} {ATTR}")

        # Dead letters: the hostile job ids, reason and delivery count, each as text.
        visit("dlq")
        row = page.locator("#dlq tbody tr", has_text=SCRIPT).first
        expect(row.locator("td").nth(2)).to_have_text(f"{IMG} {SCRIPT}")
        expect(row.locator("td").nth(3)).to_have_text(ATTR)
        page.wait_for_timeout(300)
        _inert(page, dialogs, "dead letters")
        expect(page.locator("#dlq tbody tr", has_text=SCRIPT)).to_have_count(2)  # both letters, as text
        expect(page.locator("#dlq")).to_contain_text("String should match pattern")  # the raw hostile-id training
        expect(page.locator("#dlq")).to_contain_text(repr(LABEL))

        # A crafted link: the hash names a model that is markup; it is only ever an error message.
        visit(f"model/{quote(IMG, safe='')}")
        expect(page.locator("#status")).to_have_class("error")
        page.wait_for_timeout(300)
        _inert(page, dialogs, "crafted link")
        browser.close()
