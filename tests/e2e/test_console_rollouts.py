"""The console's rollout views over a real stack holding an active canary and a rolled-back one (issue 27).

Set up as a user would, over HTTP: two trained versions, production on the first, a manual canary of
the second on production with traffic through `:predict`, and a canary on `staging` aborted through
its route. The model page shows the live split and per-version serving graphs; a promote during the
rollout is refused with the server's reason; the rollout page follows a weight change within 5 s; the
rolled-back canary shows why; the datasets page shows the table's profile. Screenshots under
test-artifacts/, axe finds nothing serious, nothing overflows at 420 px.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fermion.client import Client
from fermion.infra import Stack
from tests.helpers import wait_until
from tests.helpers.stack import StackOptions

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CLASSES = ["setosa", "versicolor", "virginica"]
MODEL = "irises"


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    """Telemetry every 0.2 s and the monitor ticking every 0.2 s: serving windows arrive in seconds."""
    return StackOptions(
        env={"FERMION_TELEMETRY_INTERVAL_S": "0.2", "FERMION_TICK_S": "0.2", "FERMION_ALIAS_TTL_S": "0.3"}
    )


def _irises(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 150)
    x = rng.normal(size=(150, 4)) + y[:, None] * 1.5
    rows = ["a,b,c,d,species"] + [",".join([*(f"{v:.3f}" for v in r), CLASSES[k]]) for r, k in zip(x, y, strict=True)]
    path = tmp_path / "irises.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _points(tmp_path: Path) -> Path:
    """An npz of one input (the monitor joins labels to single-input models' predictions)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    x = (rng.normal(size=(300, 4)) + y[:, None] * 1.5).astype(np.float32)
    path = tmp_path / "points.npz"
    np.savez(path, x=x, y=y)
    return path


def _row(rng: np.random.Generator) -> list[float]:
    return [float(v) for v in rng.normal(size=4) * 2 + 1.5]


def _traffic(stack: Stack, headers: dict[str, str], n: int) -> None:
    """`n` one-row `:predict` calls, each under its own routing key (the canary gets its share)."""
    rng = np.random.default_rng(5)
    with httpx.Client(base_url=stack.settings.inference_url, headers=headers, timeout=30) as http:
        for i in range(n):
            row = _row(rng)
            routed = {"Fermion-Routing-Key": f"u{i}"}
            r = http.post(f"/v1/models/{MODEL}:predict", json={"instances": [row]}, headers=routed)
            assert r.status_code == 200, r.text


def _labelled_traffic(stack: Stack, headers: dict[str, str], alias: str, timeout_s: float = 90) -> str:
    """Rows to NAME@alias, each labelled with what v1 answers: a canary that disagrees anywhere trails on
    online accuracy. Until the controller rolls the canary back; its reason."""
    rng = np.random.default_rng(9)
    aliases = f"{stack.settings.ingest_url}/v1/models/{MODEL}/aliases/{alias}/canary"
    deadline, n = time.monotonic() + timeout_s, 0
    with httpx.Client(base_url=stack.settings.inference_url, headers=headers, timeout=30) as http:
        while time.monotonic() < deadline:
            rows = [_row(rng) for _ in range(40)]
            truth = http.post(f"/v1/models/{MODEL}/versions/1:predict", json={"instances": rows}).json()
            labels = []
            for row, said in zip(rows, truth["predictions"], strict=True):
                extra = {"Fermion-Routing-Key": f"t{n}", "Fermion-Request-Id": f"t-{n}"}
                r = http.post(f"/v1/models/{MODEL}@{alias}:predict", json={"instances": [row]}, headers=extra)
                assert r.status_code == 200, r.text
                labels.append({"request_id": f"t-{n}", "label": str(truth["classes"].index(said))})
                n += 1
            r = httpx.post(
                f"{stack.settings.ingest_url}/v1/models/{MODEL}/labels", json={"labels": labels}, headers=headers
            )
            assert r.status_code == 202, r.text
            analysis = httpx.get(aliases, headers=headers, timeout=10).json()["analysis"]
            if analysis and analysis["action"] == "rolled_back":
                return str(analysis["reason"])
            time.sleep(0.5)
    pytest.fail(f"the controller did not roll {alias}'s canary back after {n} labelled requests: {analysis}")


@pytest.fixture(scope="module")
def held(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two versions; production canaried 10% to v2 by hand, with traffic; staging's canary aborted."""
    s, key = stack.settings, stack.identity.admin_key()
    assert key is not None
    headers = {"Authorization": f"Bearer {key}"}
    with Client.from_settings(s) as client:
        client.upload(_irises(tmp_path_factory.mktemp("irises")), name="irises")  # a table: its profile
        client.upload(_points(tmp_path_factory.mktemp("points")), name="points")
        for lr in (3e-3, 3e-2):
            job = client.train(MODEL, "points", architecture="mlp", epochs=3, learning_rate=lr)
            client.wait(job, timeout_s=240)
        client.promote(MODEL, 1)
        client.promote(MODEL, 1, alias="staging")
        client.promote(MODEL, 1, alias="trial")
    model = f"{s.ingest_url}/v1/models/{MODEL}/aliases"
    with httpx.Client(headers=headers, timeout=30) as http:
        body = {"version": 2, "steps": [10, 50, 100], "bake_s": 600, "automatic": False}
        assert http.post(f"{model}/production/canary", json=body).status_code == 200
        assert http.post(f"{model}/staging/canary", json=body).status_code == 200
        assert http.post(f"{model}/staging/canary/abort").status_code == 200
        # judged by the controller: any drop in online accuracy rolls it back (latency judged loosely)
        bounds = {"min_requests": 20, "min_labels": 20, "max_accuracy_drop": 0, "max_p99_ratio": 100}
        automatic = {"version": 2, "steps": [50, 100], "bake_s": 600, "bounds": bounds}
        assert http.post(f"{model}/trial/canary", json=automatic).status_code == 200
    _traffic(stack, headers, 200)
    reason = _labelled_traffic(stack, headers, "trial")

    def both_versions_measured() -> bool:
        r = httpx.get(f"{s.ingest_url}/v1/models/{MODEL}/serving", headers=headers, timeout=10).json()
        return {v["version"] for v in r["versions"] if v["requests"]} == {1, 2}

    wait_until(both_versions_measured, 60, "the monitor to keep both versions' serving windows")
    return {"key": key, "headers": headers, "aliases": model, "reason": reason}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup installs it)")
def test_rollouts_are_visible_live_and_safe_in_the_console(stack: Stack, held: dict[str, Any]) -> None:
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
        page.goto(f"{s.ingest_url}/console")
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
            assert errors == [], (where, errors)

        # The models list: what each alias serves, its split included.
        visit("models")
        expect(page.locator("#models")).to_contain_text("production → v1 (split: v1 90% · v2 10%)")
        # The model page: the live split of each alias, and per-version serving graphs.
        visit(f"model/{MODEL}")
        expect(page.locator("#splits tr[data-alias='production']")).to_contain_text("v1 90% · v2 10%")
        expect(page.locator("#splits tr[data-alias='staging']")).to_contain_text("v1 100%")
        expect(page.locator("#aliases")).to_contain_text("v1 (split: v1 90% · v2 10%)")
        expect(page.locator("#versions tbody tr", has_text="production 10%")).to_have_count(1)
        latency = page.locator("#serving figure.chart[data-metric='latency ms']")
        expect(latency.locator("canvas")).to_have_count(1)
        labels = latency.evaluate("f => f.uplot.series.slice(1).map(s => s.label)")
        assert {"v1 p50", "v1 p99", "v2 p50", "v2 p99"} <= set(labels), labels
        drawn = latency.evaluate("f => f.uplot.data.slice(1).map(ys => ys.filter(y => y != null).length)")
        assert all(n > 0 for n in drawn), drawn
        expect(page.locator("#serving figure.chart[data-metric='requests/s'] canvas")).to_have_count(1)
        check("model page", "rollout-model")

        # A promote during the rollout is refused, with the server's reason shown.
        promote = page.locator("[data-promote='2']")
        promote.click()
        expect(promote).to_have_text("Confirm: v2 to production?")
        promote.click()
        expect(page.locator("#status.error")).to_contain_text("Promote refused")
        expect(page.locator("#status")).to_contain_text("rollout")
        refused = page.locator("#status").inner_text()
        expect(page.locator("#splits tr[data-alias='production']")).to_contain_text("v1 90% · v2 10%")
        page.screenshot(path=ARTEFACTS / "rollout-promote-refused.png", full_page=True)

        # The rollout page: steps, bake time left, the controller's comparison; a weight change within 5 s.
        page.locator("#splits tr[data-alias='production']").get_by_role("link").click()
        expect(page.locator("#rollout-weight")).to_have_text("10%")
        expect(page.locator("#rollout-steps tbody tr")).to_have_count(3)
        expect(page.locator("#rollout-steps tr.step-current")).to_contain_text("10%")
        expect(page.locator("#bake-left")).to_contain_text("left to bake")
        expect(page.locator("#analysis")).to_contain_text("Requests (samples)", timeout=30_000)
        expect(page.locator("#analysis thead")).to_contain_text("Canary v2")
        expect(page.locator("#decision")).to_contain_text("Decision:")
        expect(page.locator("#decision-reason")).not_to_be_empty()
        step = page.locator("[data-step='production']")
        step.click()
        expect(step).to_have_text("Confirm: next step?")  # armed, not yet moved; a poll leaves it armed
        page.wait_for_timeout(2000)
        expect(step).to_have_text("Confirm: next step?")
        expect(page.locator("#rollout-weight")).to_have_text("10%")
        expect(page.locator("#serving figure.chart[data-metric='latency ms'] canvas")).to_have_count(1)
        check("rollout page", "rollout")
        step_url = f"{held['aliases']}/production/canary/step"
        r = httpx.post(step_url, json={"to": 50}, headers=held["headers"], timeout=10)
        assert r.status_code == 200, r.text
        expect(page.locator("#rollout-weight")).to_have_text("50%", timeout=5_000)
        expect(page.locator("#rollout-split")).to_have_text("v1 50% · v2 50%", timeout=5_000)
        page.screenshot(path=ARTEFACTS / "rollout-stepped.png", full_page=True)

        # The rolled-back canary: no rollout now, and the move that ended it with its reason.
        visit(f"rollout/{MODEL}/staging")
        expect(page.locator("#rollout-state")).to_contain_text("No rollout runs")
        expect(page.locator("#last-change")).to_contain_text("canary 2 rolled back")
        expect(page.locator("#changes")).to_contain_text("canary 2 rolled back")
        expect(page.locator("#rollout-actions")).to_be_hidden()
        check("aborted canary", "rollout-aborted")
        visit(f"rollout/{MODEL}/trial")  # rolled back by the controller: its decision and reason
        expect(page.locator("#rollout-state")).to_contain_text("No rollout runs")
        expect(page.locator("#decision")).to_contain_text("rollback (rolled back)")
        expect(page.locator("#decision-reason")).to_have_text(held["reason"])
        expect(page.locator("#analysis")).to_contain_text("Online accuracy")
        check("rolled-back canary", "rollout-rolled-back")

        # The datasets page: the table's profile, columns with kinds, the label's classes.
        visit("datasets")
        profile = page.locator("section.profile[data-dataset='irises']")
        expect(profile.locator(".profile-columns tbody tr")).to_have_count(5)
        expect(profile.locator(".profile-columns")).to_contain_text("species")
        expect(profile).to_contain_text("Label species (classification)")
        expect(profile.locator(".profile-classes tbody tr")).to_have_count(3)
        expect(page.locator("#datasets")).to_contain_text("150")
        check("datasets", "datasets-profile")

        # At 420 px: nothing overflows sideways.
        page.set_viewport_size({"width": 420, "height": 900})
        for where in [f"model/{MODEL}", f"rollout/{MODEL}/production", f"rollout/{MODEL}/trial", "datasets"]:
            visit(where)
            page.wait_for_timeout(300)
            wide = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert wide[0] <= wide[1], (where, wide)
            page.screenshot(path=ARTEFACTS / f"narrow-{where.replace('/', '-')}.png", full_page=True)
        browser.close()
    assert "rollout" in refused
