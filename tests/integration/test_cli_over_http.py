"""`fermion canary ...` and `fermion federated ...` against a real ingest, knowing only its URL and a key.

The ingest runs as its own process under `fermion up`'s NATS permissions (secured_ingest.py), so a
route that publishes what its role may not is caught here (issue 25: POST /v1/federations was a 504).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fermion.cli import app as cli
from fermion.client import Client, FermionError
from fermion.events import LabelsSubmitted, parse_event, subjects
from fermion.events.federation import FederationRequested
from fermion.model_store import KeyStore, RunRecord, Runs, StoreSettings, open_registry
from fermion.model_store.runs import EpochRecord
from tests.helpers import bearer, linear_draft, linear_onnx
from tests.helpers.federations import federation_body, requested
from tests.integration.secured_ingest import SecuredIngest, secured_ingest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredIngest]:
    with secured_ingest(tmp_path_factory.mktemp("cli-http")) as served:
        yield served


def _fermion(ingest: SecuredIngest, tmp: Path, *args: str, key: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env=ingest.cli_env(tmp / "client", key))
    return result


def _record(ingest: SecuredIngest, model: str) -> Any:
    return ingest.registry.alias("default", model, "production")


def _versions(ingest: SecuredIngest, tmp: Path, model: str, *seeds: int) -> None:
    """Versions pushed and version 1 promoted with the CLI, as a user makes them (no store writes)."""
    for seed in seeds:
        (tmp / f"{model}-{seed}.onnx").write_bytes(linear_onnx(seed=seed))
        pushed = _fermion(ingest, tmp, "models", "push", model, str(tmp / f"{model}-{seed}.onnx"))
        assert pushed.exit_code == 0, (pushed.output, pushed.exception)
    promoted = _fermion(ingest, tmp, "models", "promote", model, "1")
    assert promoted.exit_code == 0, (promoted.output, promoted.exception)


def test_canary_commands_move_the_alias_over_http(ingest: SecuredIngest, tmp_path: Path) -> None:
    _versions(ingest, tmp_path, "wine", 1, 2, 3)

    started = _fermion(ingest, tmp_path, "canary", "start", "wine", "2", "--steps", "10,50,100", "--manual")
    assert started.exit_code == 0, (started.output, started.exception)
    assert "wine@production: v1 90%, v2 10%" in started.output and "manual" in started.output
    assert "not announced" not in started.output  # the ingest role may publish models.rollout.started
    record = _record(ingest, "wine")
    assert record.split() == {1: 90, 2: 10} and record.rollout is not None and not record.rollout.automatic

    other = _fermion(ingest, tmp_path, "canary", "start", "wine", "3")  # a conflicting move: 409
    assert (
        other.exit_code == 1
        and "409" in str(other.exception)
        and "already rolling out version 2" in str(other.exception)
    )

    stepped = _fermion(ingest, tmp_path, "canary", "step", "wine")
    assert stepped.exit_code == 0 and "v1 50%, v2 50%" in stepped.output, stepped.output
    shown = _fermion(ingest, tmp_path, "canary", "status", "wine")
    assert "rollout of v2 over v1: step 2 of" in shown.output and "canary at 50%" in shown.output, shown.output
    as_json = json.loads(_fermion(ingest, tmp_path, "canary", "status", "wine", "-o", "json").output)
    assert as_json["record"]["rollout"]["canary"] == 2

    aborted = _fermion(ingest, tmp_path, "canary", "abort", "wine")
    assert aborted.exit_code == 0 and "wine@production: v1 100%" in aborted.output
    assert _record(ingest, "wine").split() == {1: 100} and _record(ingest, "wine").rollout is None
    nothing = _fermion(ingest, tmp_path, "canary", "step", "wine")
    assert nothing.exit_code == 1 and "409" in str(nothing.exception) and "no rollout" in str(nothing.exception)

    assert _fermion(ingest, tmp_path, "canary", "start", "wine", "3", "--manual").exit_code == 0
    finished = _fermion(ingest, tmp_path, "canary", "finish", "wine")
    assert finished.exit_code == 0 and "wine@production: v3 100%" in finished.output
    assert _record(ingest, "wine").version == 3 and 1 in _record(ingest, "wine").history

    shadowed = _fermion(ingest, tmp_path, "canary", "shadow", "wine", "2")
    assert shadowed.exit_code == 0 and "(shadow v2)" in shadowed.output and _record(ingest, "wine").shadow == 2
    assert _fermion(ingest, tmp_path, "canary", "shadow", "wine", "off").exit_code == 0
    assert _record(ingest, "wine").shadow is None


def test_a_promote_or_rollback_under_a_rollout_is_refused_naming_it_unless_aborted(
    ingest: SecuredIngest, tmp_path: Path
) -> None:
    _versions(ingest, tmp_path, "sake", 1, 2, 3)
    assert _fermion(ingest, tmp_path, "canary", "start", "sake", "2", "--manual").exit_code == 0
    shown = _fermion(ingest, tmp_path, "canary", "status", "sake")
    assert "bake time left in this step: " in shown.output, shown.output

    for refused in (("models", "promote", "sake", "3"), ("models", "rollback", "sake")):
        out = _fermion(ingest, tmp_path, *refused)
        said = str(out.exception)
        assert out.exit_code == 1 and "409" in said, (refused, out.output, said)
        assert "sake@production is rolling out version 2 over version 1 (v1 90%, v2 10%" in said, said
        assert "--abort-rollout" in said, said
    assert _record(ingest, "sake").split() == {1: 90, 2: 10}

    promoted = _fermion(ingest, tmp_path, "models", "promote", "sake", "3", "--abort-rollout")
    assert promoted.exit_code == 0 and "sake@production → version 3 (was 1)" in promoted.output, promoted.output
    record = _record(ingest, "sake")
    assert (record.version, record.rollout, record.split()) == (3, None, {3: 100})


def test_canary_moves_need_promote_and_status_needs_read(ingest: SecuredIngest, tmp_path: Path) -> None:
    _versions(ingest, tmp_path, "beer", 0, 5)
    created = _fermion(ingest, tmp_path, "keys", "create", "--tenant", "default", "--scopes", "read")
    assert created.exit_code == 0, (created.output, created.exception)
    reader = created.output.strip().splitlines()[-1]
    refused = _fermion(ingest, tmp_path, "canary", "start", "beer", "2", key=reader)
    assert refused.exit_code == 1 and "403" in str(refused.exception)
    assert _record(ingest, "beer").split() == {1: 100}
    seen = _fermion(ingest, tmp_path, "canary", "status", "beer", key=reader)
    assert seen.exit_code == 0 and "beer@production: v1 100%" in seen.output


async def _requested(ingest: SecuredIngest, federation_id: str) -> FederationRequested:
    bus = await ingest.admin_bus()
    try:
        return await requested(bus, federation_id)
    finally:
        await bus.close()


def test_federations_start_over_http_and_list_their_rounds(ingest: SecuredIngest, tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((20, 64), np.float32), y=np.arange(20) % 10)
    (tmp_path / "digits-holdout.npz").write_bytes(buf.getvalue())
    with Client(ingest.url, ingest.url, api_key=ingest.admin_key) as client:  # over HTTP, as a user uploads
        stored = client.upload(tmp_path / "digits-holdout.npz")

    # The route itself, as the `ingest` NATS role: before its grant, a 504 every time (issue 25).
    answer = httpx.post(
        f"{ingest.url}/v1/federations",
        json=federation_body({"name": "digits-holdout"}),
        headers=bearer(ingest.admin_key),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(federation_body({"name": "digits-holdout"})))
    result = _fermion(ingest, tmp_path, "federated", "start", str(spec))
    assert result.exit_code == 0, (result.output, result.exception)
    fed = result.output.strip()
    started = asyncio.run(_requested(ingest, fed))
    assert started.data.holdout.sha256 == stored["sha256"] and started.data.min_updates == 2
    # A spec that gives the held-out set's full address is sent by name and hash.
    spec.write_text(
        json.dumps(federation_body({"name": "digits-holdout", "sha256": stored["sha256"], "uri": stored["uri"]}))
    )
    addressed = _fermion(ingest, tmp_path, "federated", "start", str(spec))
    assert addressed.exit_code == 0, (addressed.output, addressed.exception)

    empty = _fermion(ingest, tmp_path, "federated", "rounds", fed, "-o", "json")
    assert empty.exit_code == 0 and json.loads(empty.output) == []
    for r, acc in ((1, 0.5), (2, 0.75)):  # as the coordinator records a closed round
        result_json = {"round": r, "version": r, "metrics": {"accuracy": acc}, "participants": ["site-0", "site-1"]}
        ingest.registry.store.put(
            f"federated/default/{fed}/rounds/{r}/result.json", json.dumps({**result_json, "n_examples": 40}).encode()
        )
    table = _fermion(ingest, tmp_path, "federated", "rounds", fed)
    assert table.exit_code == 0, (table.output, table.exception)
    assert "0.5000" in table.output and "0.7500" in table.output and "site-0, site-1" in table.output
    rows = json.loads(_fermion(ingest, tmp_path, "federated", "rounds", fed, "-o", "json").output)
    assert [(r["round"], r["version"], r["n_examples"]) for r in rows] == [(1, 1, 40), (2, 2, 40)]


def test_runs_are_read_over_http(ingest: SecuredIngest, tmp_path: Path) -> None:
    runs = Runs(ingest.registry.store)
    for job, lr, loss in (("job-aaa", 0.01, 0.5), ("job-bbb", 0.003, 0.25)):
        epochs = [EpochRecord(epoch=1, loss=loss, metrics={"accuracy": 0.9}, seconds=1.5)]
        record = RunRecord(job_id=job, tenant="default", model_name="blobs", status="completed", epochs=epochs)
        runs.put(record.model_copy(update={"parameters": {"learning_rate": lr}, "metrics": {"accuracy": 0.9}}))
    listed = _fermion(ingest, tmp_path, "runs", "list", "--model", "blobs")
    assert listed.exit_code == 0 and "job-aaa" in listed.output and "job-bbb" in listed.output, listed.output
    shown = _fermion(ingest, tmp_path, "runs", "show", "job-bbb")
    assert shown.exit_code == 0 and "0.2500" in shown.output and "learning_rate" in shown.output, shown.output
    compared = _fermion(ingest, tmp_path, "runs", "compare", "job-aaa", "job-bbb")
    assert compared.exit_code == 0 and "learning_rate" in compared.output and "0.003" in compared.output


def test_runs_take_prefixes_print_whole_ids_and_answer_json_or_yaml(ingest: SecuredIngest, tmp_path: Path) -> None:
    """Issue 27: ids never cut (piped, at 80 columns), prefixes taken, an ambiguous one refused naming both."""
    runs = Runs(ingest.registry.store)
    long_ids = [f"sweep-{'7' * 24}-trial-{n}-{'e' * 20}" for n in (1, 2)]
    for job, lr in zip(long_ids, (0.01, 0.003), strict=True):
        record = RunRecord(job_id=job, tenant="default", model_name="longs", status="completed")
        runs.put(record.model_copy(update={"parameters": {"learning_rate": lr}, "metrics": {"accuracy": 0.8}}))
    env = {**ingest.cli_env(tmp_path / "client", None), "COLUMNS": "80"}

    def fermion(*args: str) -> Any:
        return CliRunner().invoke(cli, list(args), env=env)

    listed = fermion("runs", "list", "--model", "longs")
    assert listed.exit_code == 0 and all(j in listed.output for j in long_ids), listed.output  # whole, one line
    as_json = json.loads(fermion("runs", "list", "--model", "longs", "-o", "json").output)
    assert sorted(r["job_id"] for r in as_json) == sorted(long_ids)
    shown = yaml.safe_load(fermion("runs", "show", long_ids[1][:-3], "-o", "yaml").output)
    assert shown["job_id"] == long_ids[1]
    compared = json.loads(fermion("runs", "compare", long_ids[0][:-5], long_ids[1][:-5], "-o", "json").output)
    assert [r["job_id"] for r in compared["runs"]] == long_ids and compared["differing_parameters"] == ["learning_rate"]
    table = fermion("runs", "compare", long_ids[0][:-5], long_ids[1][:-5])
    assert table.exit_code == 0 and all(j in table.output for j in long_ids), table.output
    ambiguous = fermion("runs", "show", "sweep-7777")
    assert ambiguous.exit_code == 1 and isinstance(ambiguous.exception, FermionError)
    assert "ambiguous" in str(ambiguous.exception) and all(j in str(ambiguous.exception) for j in long_ids)


async def test_a_canary_starts_while_nats_is_away(tmp_path: Path) -> None:
    """As when the CLI moved the alias itself: the move stands, `announced` says the event did not go out."""
    from fermion.functions.ingest.app import create_app
    from fermion.functions.ingest.deps import get_keys, get_registry
    from fermion.functions.ingest.settings import IngestSettings
    from tests.helpers import api_key

    registry = open_registry(StoreSettings(home=tmp_path))
    for seed in (1, 2):
        registry.register("default", "cider", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    registry.set_alias("default", "cider", "production", 1)
    settings = IngestSettings(home=tmp_path, nats_url="nats://127.0.0.1:1")
    api = create_app(lambda: settings)
    api.dependency_overrides[get_registry] = lambda: registry
    api.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    headers = bearer(api_key(registry, "promote"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://ingest") as client:
        r = await client.post("/v1/models/cider/aliases/production/canary", json={"version": 2}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["announced"] is False and r.json()["record"]["weights"] == {"1": 90, "2": 10}
    assert registry.alias("default", "cider", "production").split() == {1: 90, 2: 10}


async def _labels(ingest: SecuredIngest) -> list[LabelsSubmitted]:
    bus = await ingest.admin_bus()
    try:
        found = [parse_event(m.data, LabelsSubmitted) for m in await bus.history(subjects.MODELS_LABELS)]
    finally:
        await bus.close()
    return [e for e in found if isinstance(e, LabelsSubmitted)]


def test_labels_are_submitted_with_the_cli(ingest: SecuredIngest, tmp_path: Path) -> None:
    """The README's ground truth for online accuracy (`POST /v1/models/{name}/labels`), from a CSV."""
    (tmp_path / "labels.csv").write_text("request_id,label\nreq-1,setosa\n\nreq-2,virginica\n")
    done = _fermion(ingest, tmp_path, "models", "labels", "mead", str(tmp_path / "labels.csv"))
    assert done.exit_code == 0 and "2 labels of mead submitted" in done.output, (done.output, done.exception)
    (event,) = [e for e in asyncio.run(_labels(ingest)) if e.data.model_name == "mead"]
    assert [(x.request_id, x.label) for x in event.data.labels] == [("req-1", "setosa"), ("req-2", "virginica")]
    (tmp_path / "bad.csv").write_text("req-1,setosa,extra\n")
    bad = _fermion(ingest, tmp_path, "models", "labels", "mead", str(tmp_path / "bad.csv"))
    assert bad.exit_code == 1 and "request_id,label" in str(bad.exception)


CUSTOMERS = "id,member,plan,age,outcome\n" + "".join(
    f"{i},{'yes' if i % 2 else 'no'},{('basic', 'plus', 'pro')[i % 3]},{'' if i % 9 == 0 else 20 + i % 45},"
    f"{('churn', 'stay', 'upgrade')[i % 3]}\n"
    for i in range(1, 301)
)


async def test_datasets_are_listed_and_shown_and_a_table_scored_and_fetched_over_http(
    ingest: SecuredIngest, tmp_path: Path
) -> None:
    from fermion.functions.trainer.scoring import Scorer
    from fermion.functions.trainer.settings import TrainerSettings
    from tests.helpers.tables import table_draft, table_onnx

    ingest.registry.register("default", "churn", {"model.onnx": table_onnx()}, table_draft())
    (tmp_path / "customers.csv").write_text(CUSTOMERS)

    def fermion(*args: str) -> Any:  # the CLI blocks: it runs in a thread while the scorer runs on this loop
        result = _fermion(ingest, tmp_path, *args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    uploaded = await asyncio.to_thread(fermion, "upload", str(tmp_path / "customers.csv"))
    assert "300 rows" in uploaded.output and "outcome" in uploaded.output, uploaded.output
    listed = json.loads((await asyncio.to_thread(fermion, "datasets", "list", "-o", "json")).output)
    (customers,) = [d for d in listed if d["name"] == "customers"]
    assert (customers["rows"], customers["columns"], customers["label"]) == (300, 5, "outcome")
    shown = (await asyncio.to_thread(fermion, "datasets", "show", "customers")).output
    assert "plan" in shown and "category" in shown and "age" in shown, shown
    detail = json.loads((await asyncio.to_thread(fermion, "datasets", "show", "customers", "-o", "json")).output)
    assert detail["profile"]["rows"] == 300

    scored = await asyncio.to_thread(fermion, "score", "churn", "--dataset", "customers", "--id-column", "id")
    job = scored.output.split("scoring job ", 1)[1].split(":", 1)[0]
    bus = await ingest.admin_bus()
    stop = asyncio.Event()
    settings = TrainerSettings(nats_url=ingest.nats.url, ack_wait_s=10, max_deliver=3, retry_delay_s=0.2)
    task = asyncio.create_task(Scorer(bus, ingest.registry, settings).run(stop))
    try:
        for _ in range(300):  # bounded: 30 s
            state = json.loads((await asyncio.to_thread(fermion, "jobs", "show", job, "-o", "json")).output)
            if state["state"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await bus.close()
    assert state["state"] == "completed", state
    out = tmp_path / "scored.csv"
    fetched = await asyncio.to_thread(fermion, "jobs", "fetch", job[:8], "--out", str(out))
    assert str(out) in fetched.output.replace("\n", "")
    import pyarrow.parquet as pq

    scores = pq.read_table(out)  # the job wrote parquet (the default); the name is the user's
    assert scores.num_rows == 300 and scores.column_names[:2] == ["id", "prediction"]
    assert set(scores["prediction"].to_pylist()) <= {"churn", "stay", "upgrade"}
