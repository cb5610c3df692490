"""Every console page over a real stack holding a sweep, a failed run, a pipeline and a federation's round
(issue 27): each page shows what it must, screenshots go to test-artifacts/, axe finds nothing serious,
and at 420 px nothing overflows the page. Debian's chromium, as the other console tests."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fermion.client import Client
from fermion.events import Bus, DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.infra import Stack
from fermion.model_store import open_store
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CLASSES = ["setosa", "versicolor", "virginica"]
MODEL, FEDERATION, PIPELINE, REGRESSION = "flowers", "fed-one", "flowers-rule", "growth"
MICROSECONDS = re.compile(r"\d{2}:\d{2}:\d{2}\.\d{3,}")
PAGES = ["models", f"model/{MODEL}", "runs", "jobs", "datasets", "pipelines", "federations", "keys", "dlq"]


def _growth(tmp_path: Path) -> Path:
    """A table with a continuous label: a regression, whose evaluation is its residuals."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    y = 10 + 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(scale=0.5, size=200)
    rows = ["a,b,c,height"] + [",".join(f"{v:.3f}" for v in (*r, t)) for r, t in zip(x, y, strict=True)]
    path = tmp_path / "growth.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _flowers(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 4)) + y[:, None] * 1.5  # overlapping: a confusion matrix with errors off the diagonal
    rows = ["a,b,c,d,species"] + [",".join([*(f"{v:.3f}" for v in r), CLASSES[k]]) for r, k in zip(x, y, strict=True)]
    path = tmp_path / "flowers.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


async def _failing(stack: Stack, ref: DatasetRef) -> str:
    """A training past ingest's checks (as a producer on the bus can send): the trainer fails it, with a reason."""
    bus = await Bus.from_settings(stack.identity.bus_settings("ingest", stack.settings.nats_url), name="pages-ingest")
    try:
        # a missing label column falls back to the last (species): a regression on that text label fails
        recipe = Recipe(epochs=1, label_column="no-such-column", task="regression")
        event = TrainingRequested(data=TrainingRequest(model_name=MODEL, dataset=ref, recipe=recipe))
        await bus.publish(event)
        return event.id
    finally:
        await bus.close()


def _status(s: Any, headers: dict[str, str], job: str) -> str | None:
    r = httpx.get(f"{s.ingest_url}/v1/runs/{job}", headers=headers, timeout=10)
    return r.json().get("status") if r.status_code == 200 else None


@pytest.fixture(scope="module")
def held(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with a two-trial sweep (promoted), a failed run, a pipeline rule and a closed federated round."""
    s, key = stack.settings, stack.identity.admin_key()
    assert key is not None
    headers = {"Authorization": f"Bearer {key}"}
    with Client.from_settings(s) as client:
        client.upload(_flowers(tmp_path_factory.mktemp("flowers")), name="flowers")
        trials = [
            {"architecture": "mlp", "epochs": 3, "learning_rate": lr, "label_column": "species"} for lr in (3e-3, 3e-2)
        ]
        gate = {"alias": "production", "metric": "accuracy", "minimum": 0.0}
        sweep = client.sweep(MODEL, "flowers", trials, metric="accuracy", gate=gate)
        copy = client.upload(_flowers(tmp_path_factory.mktemp("again")), name="flowers-copy")
        # the upload's answer carries the table's profile beside the reference a training takes
        ref = DatasetRef.model_validate({k: v for k, v in copy.items() if k in DatasetRef.model_fields})
        client.upload(_growth(tmp_path_factory.mktemp("growth")), name="growth")
        growth = client.train(REGRESSION, "growth", epochs=10, label_column="height")
        client.put_pipeline(PIPELINE, {"dataset_prefix": "flowers-new", "model_name": MODEL, "recipe": {"epochs": 2}})
    failed = asyncio.run(_failing(stack, ref))
    jobs = list(sweep["trial_job_ids"])
    for job in jobs:
        wait_until(lambda j=job: _status(s, headers, j) == "completed", 180, f"sweep trial {job}")
    wait_until(lambda: _status(s, headers, failed) == "failed", 60, "the failed run")
    wait_until(lambda: _status(s, headers, growth) == "completed", 180, "the regression")
    models = lambda: httpx.get(f"{s.ingest_url}/v1/models/{MODEL}", headers=headers, timeout=10).json()  # noqa: E731
    wait_until(lambda: "production" in models().get("aliases", {}), 60, "the sweep's promotion")
    result = {"version": 1, "metrics": {"accuracy": 0.9}, "n_examples": 120, "participants": ["clinic-a", "clinic-b"]}
    open_store(stack.store_url).put(f"federated/default/{FEDERATION}/rounds/1/result.json", json.dumps(result).encode())
    return {
        "key": key,
        "headers": headers,
        "sweep": sweep["sweep_id"],
        "trials": jobs,
        "failed": failed,
        "error": httpx.get(f"{s.ingest_url}/v1/runs/{failed}", headers=headers).json()["error"],
    }


def test_the_ingest_root_redirects_to_the_console(stack: Stack) -> None:
    r = httpx.get(f"{stack.settings.ingest_url}/", follow_redirects=False, timeout=10)
    assert r.status_code in (302, 307) and r.headers["location"] == "/console"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup installs it)")
def test_every_console_page_shows_what_it_must(stack: Stack, held: dict[str, Any]) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    s = stack.settings
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{s.ingest_url}/")  # the root is the console
        assert page.url.endswith("/console")
        page.get_by_label("API key").fill(held["key"])
        page.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("link", name=MODEL, exact=True)).to_be_visible()

        def visit(where: str) -> None:
            page.goto("about:blank")
            page.goto(f"{s.ingest_url}/console#{where}")
            expect(page.locator("#status")).not_to_be_empty()

        def check(where: str, shot: str) -> None:
            page.screenshot(path=ARTEFACTS / f"{shot}.png", full_page=True)
            serious = [v for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
            assert serious == [], (where, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in serious])
            assert not MICROSECONDS.search(page.locator("#view").inner_text()), (
                f"{where}: a timestamp with microseconds"
            )
            assert errors == [], (where, errors)

        # Models: which version serves each alias; a model's confusion matrix and per-class scores.
        visit("models")
        expect(page.locator("#models")).to_contain_text("production → v")
        check("models", "models")
        visit(f"model/{MODEL}")
        expect(page.locator("#aliases")).to_contain_text("production")
        expect(page.locator("#live-split")).to_be_visible()  # the rollouts work's place, marked
        expect(page.locator("#confusion tbody tr")).to_have_count(3)
        heads = page.locator("#confusion thead th").all_inner_texts()
        assert heads[1:] == CLASSES, heads
        rows = page.locator("#confusion tbody th").all_inner_texts()
        assert rows == CLASSES, rows
        expect(page.locator("#per-class tbody tr")).to_have_count(3)
        expect(page.locator("#per-class")).to_contain_text("virginica")
        check("model page", "model")
        visit(f"model/{REGRESSION}")  # a regression's evaluation: its residuals, not a confusion matrix
        page.get_by_role("button", name="Evaluation").first.click()
        expect(page.locator("#residuals .u-legend")).to_contain_text("rows per bin")
        expect(page.locator("#residual-quantiles tbody tr")).to_have_count(5)
        expect(page.locator("#confusion")).to_have_count(0)
        check("regression model page", "model-regression")

        # Runs: the sweep's trials together with learning_rate as a column; the failure reason whole.
        visit("runs")
        sweep = page.locator(f"section.group[data-sweep='{held['sweep']}']")
        expect(sweep.locator("tbody tr")).to_have_count(3)  # the two trials, then the winner's own training
        expect(sweep.locator("h3")).to_contain_text("2 trials, then the winner retrained")
        assert "learning_rate" in " ".join(sweep.locator("thead th").all_inner_texts())
        expect(page.locator("#runs .reason")).to_have_text(held["error"])
        sweep.get_by_role("button", name="learning_rate").click()  # sortable
        head = sweep.locator("th[aria-sort='ascending']")
        expect(head).to_contain_text("learning_rate")
        cells = sweep.locator("tbody tr td:nth-child(6)").all_inner_texts()
        assert [float(c) for c in cells] == sorted(float(c) for c in cells), cells
        page.get_by_label("Filter runs").fill("no-such-column")  # filterable
        expect(page.locator("#runs tbody tr")).to_have_count(1)
        page.get_by_label("Filter runs").fill("")
        for job in held["trials"]:
            page.get_by_label(f"plot run {job}", exact=True).check()
        page.get_by_role("button", name="Plot selected runs").click()
        loss = page.locator("#charts figure.chart[data-metric='loss']")
        expect(loss.locator(".u-legend .u-series")).to_have_count(1 + 4)  # epoch, then training and validation of each
        axes = loss.evaluate("f => f.uplot.axes.map(a => [a.label, a.grid.show])")
        assert axes == [["epoch", True], ["loss", True]], axes
        plot, legend = loss.locator(".u-over").bounding_box(), loss.locator(".u-legend").bounding_box()
        assert plot and legend and legend["y"] >= plot["y"] + plot["height"], (plot, legend)  # the legend is below
        loss.locator(".u-over").hover()  # scrolled into view, the pointer at its centre: values in the legend
        expect(loss.locator(".u-legend .u-series").nth(1).locator(".u-value")).to_have_text(re.compile(r"\d"))
        expect(page.locator("#charts figure.chart[data-metric='accuracy']")).to_have_count(1)
        check("runs", "runs")

        # A run: every metric per epoch plotted; the failed run's reason as written.
        visit(f"run/{held['trials'][0]}")
        metrics = page.locator("#charts figure.chart").evaluate_all("fs => fs.map(f => f.dataset.metric)")
        assert {"loss", "accuracy", "macro_f1"} <= set(metrics), metrics
        check("run page", "run")
        visit(f"run/{held['failed']}")
        expect(page.locator("#view .error")).to_have_text(held["error"])
        check("failed run", "run-failed")

        # Compare: the parameter that differs is named and marked.
        visit("compare/" + "&".join(held["trials"]))
        expect(page.locator("#run-comparison tr.differs")).to_have_count(1)
        expect(page.locator("#run-comparison tr.differs")).to_contain_text("learning_rate")
        check("compare", "compare")

        # Jobs, datasets, pipelines, federations, keys, dead letters.
        visit("jobs")
        expect(page.locator("#view h2")).to_have_text("Jobs")
        expect(page.locator("#jobs tbody tr", has_text=held["failed"])).to_contain_text("failed")
        expect(page.locator("#jobs progress")).not_to_have_count(0)
        check("jobs", "jobs")
        visit("datasets")
        expect(page.locator("#datasets")).to_contain_text("flowers")
        check("datasets", "datasets")
        visit("pipelines")
        expect(page.locator("#pipelines")).to_contain_text(PIPELINE)
        check("pipelines", "pipelines")
        visit("federations")
        expect(page.locator("#federations")).to_contain_text(FEDERATION)
        page.get_by_role("link", name=FEDERATION).click()
        expect(page.locator("#rounds tbody tr")).to_have_count(1)
        check("federation", "federation")
        visit("keys")
        expect(page.locator("#keys tbody tr")).not_to_have_count(0)
        check("keys", "keys")
        visit("dlq")
        check("dead letters", "dlq")

        # At 420 px: no page overflows sideways (wide tables scroll inside their own box).
        page.set_viewport_size({"width": 420, "height": 900})
        for where in [*PAGES, f"run/{held['trials'][0]}", "compare/" + "&".join(held["trials"])]:
            visit(where)
            page.wait_for_timeout(200)
            wide = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert wide[0] <= wide[1], (where, wide)
            page.screenshot(path=ARTEFACTS / f"narrow-{where.split('/')[0]}.png", full_page=True)
        browser.close()
