"""The whole flow across real processes: upload → train → ONNX → registry → infer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from fermion.client import Client, FermionError, JobFailed
from fermion.infra import Stack, StackSettings
from tests.helpers import free_port, wait_for_model

pytestmark = pytest.mark.e2e


def _settings(home: Path) -> StackSettings:
    return StackSettings(home=home, nats_port=free_port(), ingest_port=free_port(), inference_port=free_port())


def _cli_env(s: StackSettings) -> dict[str, str]:
    """The environment that points the `fermion` CLI at a stack."""
    return {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "200",
    }


def _fermion(s: StackSettings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `fermion` CLI against a stack."""
    return subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=_cli_env(s), capture_output=True, text=True, timeout=60
    )


def test_upload_train_serve_digits(stack: Stack, tmp_path: Path) -> None:
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    order = np.random.default_rng(1).permutation(len(x))
    held, train = order[:300], order[300:]
    np.savez(tmp_path / "digits.npz", x=x[train], y=y[train])

    with Client.from_settings(stack.settings) as client:
        _digits_flow(client, x, y, held, tmp_path)


def _digits_flow(client: Client, x: np.ndarray, y: np.ndarray, held: np.ndarray, tmp_path: Path) -> None:
    ds = client.upload(tmp_path / "digits.npz", name="digits")
    job = client.train("digits", "digits", architecture="cnn", epochs=12, learning_rate=2e-3)
    epochs: list[int] = []
    done = client.wait(job, on_progress=lambda e: epochs.append(e.data.epoch), timeout_s=120)
    assert epochs == list(range(13))  # 0: "started"
    assert done.data.metrics["accuracy"] >= 0.9

    logits = client.predict("digits", x[held])  # raw pixels in: preprocessing is in the graph
    assert logits.shape == (300, 10)
    assert np.mean(logits.argmax(1) == y[held]) >= 0.9
    meta = client.metadata("digits")
    assert meta["versions"] == [str(done.data.version)]
    assert meta["parameters"]["providers"][-1] == "CPUExecutionProvider"
    assert meta["parameters"]["content_sha256"]
    assert meta["parameters"]["variants"] == ["fp16", "fp32", "int8"]  # each proven against torch at compile
    assert meta["parameters"]["variant"] == "fp32"  # the CPU default
    assert ds["sha256"] and len(ds["sha256"]) == 64


def test_bad_requests_across_the_stack(stack: Stack, tmp_path: Path) -> None:
    with Client.from_settings(stack.settings) as client:
        _bad_requests(client, tmp_path)
    assert stack.failed() == []  # bad input crashed nothing


def _bad_requests(client: Client, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,label\n" + "1,2,x\n3,4,y\n" * 10)
    client.upload(tmp_path / "t.csv", name="tab")
    with pytest.raises(JobFailed, match="unknown architecture 'resnet9000'"):
        client.wait(client.train("tab", "tab", architecture="resnet9000", epochs=1), timeout_s=60)
    with pytest.raises(FermionError, match=r"400.*no label column 'kind'; its columns are a, b, label"):
        client.train("tab", "tab", label_column="kind", epochs=1)  # refused at the door, nothing queued
    with pytest.raises(FermionError, match=r"404.*no model 'tab'"):
        client.predict("tab", np.zeros((1, 2), np.float32))
    with pytest.raises(FermionError, match=r"400.*unsupported file"):
        (tmp_path / "x.json").write_text("{}")
        client.upload(tmp_path / "x.json")


def test_fermion_demo_prints_a_served_accuracy(tmp_path: Path) -> None:
    """The README's first command, end to end: it starts its own stack and stops it."""
    s = _settings(tmp_path / "home")
    env = {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "200",
    }
    out = subprocess.run(
        [sys.executable, "-m", "fermion", "demo"], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    m = re.search(r"served accuracy on \d+ held-out digits: ([0-9.]+)", out.stdout)
    assert m, out.stdout[-3000:]
    assert float(m.group(1)) >= 0.9


def test_registry_commands_of_the_cli(stack: Stack) -> None:
    """`fermion models ...` against the running stack (runs after the digits flow registered a version)."""
    s = stack.settings

    def fermion(*args: str) -> subprocess.CompletedProcess[str]:
        return _fermion(s, *args)

    listing = fermion("models", "list")
    assert listing.returncode == 0 and "digits" in listing.stdout and "latest→1" in listing.stdout
    assert "training event" in fermion("models", "versions", "digits").stdout
    described = fermion("models", "show", "digits:1")
    assert described.returncode == 0 and '"content_sha256"' in described.stdout
    promoted = fermion("models", "promote", "digits", "1", "--alias", "staging")
    assert promoted.returncode == 0 and "digits@staging → version 1" in promoted.stdout
    with Client.from_settings(s) as client:
        assert client.predict("digits@staging", np.zeros((1, 64), np.float32)).shape == (1, 10)
    refused = fermion("models", "rollback", "digits", "--alias", "staging")
    assert refused.returncode == 1 and "no earlier version" in refused.stderr  # errors go to stderr, one line
    bad = fermion("models", "show", "../etc:1")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_job_views_and_dead_letters_from_the_cli(stack: Stack) -> None:
    """Runs after the flows above: one completed digits job, two failed bad ones."""
    s = stack.settings
    listing = _fermion(s, "jobs", "list")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "completed" in listing.stdout and "failed" in listing.stdout
    as_json = json.loads(_fermion(s, "jobs", "list", "-o", "json").stdout)
    assert {j["state"] for j in as_json} >= {"completed", "failed"}
    assert all(len(j["job_id"]) >= 20 for j in as_json)  # full ids
    with Client.from_settings(s) as client:
        jobs = client.jobs()
        letters = client.dead_letters()
    (digits_job,) = [j for j in jobs.values() if j.model_name == "digits"]
    assert digits_job.state == "completed" and digits_job.version == 1 and digits_job.epoch == digits_job.epochs
    shown = _fermion(s, "jobs", "show", digits_job.job_id[:10])  # a unique prefix
    assert shown.returncode == 0 and '"state": "completed"' in shown.stdout
    (bad,) = [d for d in letters if "resnet9000" in d.reason]
    assert bad.deliveries == "1" and jobs[bad.job_id].state == "failed"
    assert "resnet9000" in _fermion(s, "jobs", "dlq", "list").stdout
    retried = _fermion(s, "jobs", "dlq", "retry", bad.job_id)
    assert retried.returncode == 0, retried.stdout
    with Client.from_settings(s) as client:
        for _ in range(100):  # the retry fails the same way and is dead-lettered a second time
            if len([d for d in client.dead_letters() if d.job_id == bad.job_id]) == 2:
                break
            time.sleep(0.1)
        assert len([d for d in client.dead_letters() if d.job_id == bad.job_id]) == 2
    assert _fermion(s, "jobs", "dlq", "retry", "no-such-job").returncode == 1


def test_a_pipeline_rule_trains_and_promotes_an_uploaded_dataset(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    added = _fermion(
        s,
        "pipelines",
        "add",
        "blobs-prod",
        "--dataset",
        "blobs",
        "--model",
        "blobs",
        "--epochs",
        "10",
        "--learning-rate",
        "0.01",
        "--minimum",
        "0.9",
    )
    assert added.returncode == 0, added.stdout + added.stderr
    assert "blobs-prod" in _fermion(s, "pipelines", "list").stdout
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    x = (rng.normal(size=(300, 5)) + y[:, None] * 3).astype(np.float32)
    np.savez(tmp_path / "blobs-v1.npz", x=x, y=y)
    with Client.from_settings(s) as client:
        client.upload(tmp_path / "blobs-v1.npz")  # nothing else: the rule does the rest
        meta = wait_for_model(client, "blobs@production")
        assert meta["versions"] == ["1"]
        assert np.mean(client.predict("blobs@production", x).argmax(1) == y) >= 0.9
        (job,) = [j for j in client.jobs().values() if j.model_name == "blobs"]
        assert job.job_id.startswith("blobs-prod.") and job.state == "completed"
    assert _fermion(s, "pipelines", "delete", "blobs-prod").returncode == 0
    assert _fermion(s, "pipelines", "delete", "blobs-prod").returncode == 1


def test_a_sweep_fans_out_and_promotes_the_best_trial(stack: Stack, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 240)
    x = (rng.normal(size=(240, 5)) + y[:, None] * 1.5).astype(np.float32)
    np.savez(tmp_path / "sweepdata.npz", x=x, y=y)
    trials = [
        {"architecture": "mlp", "epochs": 1, "learning_rate": 1e-5},  # barely trains: must not win
        {"architecture": "mlp", "epochs": 10, "learning_rate": 1e-2},
        {"architecture": "mlp", "epochs": 10, "learning_rate": 3e-3},
    ]
    with Client.from_settings(stack.settings) as client:
        client.upload(tmp_path / "sweepdata.npz")
        out = client.sweep(
            "swept",
            "sweepdata",
            trials,
            metric="accuracy",
            gate={"alias": "champion", "metric": "accuracy", "minimum": 0.5},
            prune=False,  # every trial runs to its end: which one the median pruner stops depends on timing
        )
        assert len(out["trial_job_ids"]) == 3
        champion = wait_for_model(client, "swept@champion")
        jobs = client.jobs()
        record = client.sweep_record(out["sweep_id"], "swept")
    trial_jobs = [jobs[j] for j in out["trial_job_ids"]]
    assert all(j.state == "completed" and j.version is None for j in trial_jobs)  # trials are runs, not versions
    best_score = max(j.metrics["accuracy"] for j in trial_jobs)
    winner = jobs[out["winner_job_id"]]
    assert str(winner.version) == champion["versions"][0] == "1"  # the sweep's one version
    assert winner.metrics["accuracy"] == best_score  # the best trial, trained again with its recipe
    assert record["winner"]["trial_job_id"] != out["trial_job_ids"][0] and record["winner"]["promoted"]
