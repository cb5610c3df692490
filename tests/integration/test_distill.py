"""Knowledge distillation (issue 30): a pushed ONNX file teaches a student through the trainer process;
a teacher that does not exist or does not take the dataset's rows is refused at the door (CLI over HTTP)
and, for a request that bypasses the door (a pipeline), by the trainer.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from fermion.cli import app as cli
from fermion.compile.edge import EdgeOptions
from fermion.events import (
    Bus,
    DatasetRef,
    Event,
    Recipe,
    TrainingCompleted,
    TrainingFailed,
    TrainingRequest,
    TrainingRequested,
    parse_event,
)
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_keys, get_registry
from fermion.functions.ingest.edge_build import export_edge
from fermion.functions.ingest.settings import IngestSettings
from fermion.model_store import (
    DatasetStore,
    Draft,
    KeyStore,
    Lineage,
    Registry,
    Signature,
    StoreSettings,
    TensorSpec,
    open_registry,
)
from fermion.model_store.settings import SigningSettings
from tests.helpers import Trainer, api_key, bearer, linear_draft, linear_onnx
from tests.helpers.models import model_bytes
from tests.helpers.pictures import digit_pictures, write_class_folders, zip_folder
from tests.integration.secured_ingest import SecuredIngest, secured_ingest

pytestmark = pytest.mark.integration


def _blobs(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.normal(size=(n, 6)) + y[:, None] * 2.0).astype(np.float32), y


def _npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def _softmax_teacher(x: np.ndarray, y: np.ndarray) -> bytes:
    """A logistic regression fitted by scikit-learn, as an ONNX graph answering probabilities (not logits)."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(max_iter=500).fit(x, y)
    w = numpy_helper.from_array(fitted.coef_.T.astype(np.float32), "W")
    b = numpy_helper.from_array(fitted.intercept_.astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["scores"]),
            helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
        ],
        "pushed-logreg",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3])],
        [w, b],
    )
    return model_bytes(graph)


def _push(registry: Registry, home: Path, name: str, onnx_file: bytes, labels: str) -> dict[str, object]:
    """`fermion models push`'s request to the ingest function, in process, onto the session's store."""
    app = create_app(lambda: IngestSettings(home=home))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    with TestClient(app) as client:
        out = client.post(
            f"/v1/models/{name}/versions",
            files=[("model", ("logreg.onnx", onnx_file))],
            data={"labels": labels},
            headers=bearer(api_key(registry, "upload")),
        )
    assert out.status_code == 201, out.text
    return dict(out.json())


async def _outcome(bus: Bus, job_id: str, since: datetime, timeout_s: float = 120) -> Event:
    async def wait() -> Event:
        events = bus.watch("fermion.training.>", since=since)
        try:
            async for raw in events:
                event = parse_event(raw)
                if isinstance(event, TrainingCompleted | TrainingFailed) and event.data.job_id == job_id:
                    return event
        finally:
            await events.aclose()
        raise AssertionError("the event log ended")

    return await asyncio.wait_for(wait(), timeout_s)


def _session_store(env: dict[str, str]) -> Registry:
    return open_registry(StoreSettings(home=Path(env["FERMION_HOME"]), store_url=env["FERMION_STORE_URL"]))


async def test_a_pushed_onnx_file_teaches_and_the_student_names_it(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    registry = _session_store(stack_env)
    x, y = _blobs()
    pushed = _push(registry, Path(stack_env["FERMION_HOME"]), "logreg", _softmax_teacher(x, y), "0,1,2")
    stored = DatasetStore(registry.store).put("default", "blobs-taught", _npz(x, y), "npz")
    ref = DatasetRef(name="blobs-taught", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    recipe = Recipe(epochs=15, learning_rate=1e-2, hidden=16, distill={"teacher": "logreg@latest", "temperature": 2})
    event = TrainingRequested(data=TrainingRequest(model_name="student", dataset=ref, recipe=recipe))
    since = datetime.now(UTC) - timedelta(seconds=1)
    await bus.publish(event)
    done = await _outcome(bus, event.id, since)

    assert isinstance(done, TrainingCompleted), done
    student = registry.manifest("default", "student", done.data.version)
    teacher = registry.manifest("default", "logreg", int(str(pushed["version"])))
    assert student.lineage.teacher == {
        "name": "logreg",
        "version": teacher.version,
        "content_sha256": teacher.content_sha256,
    }
    assert student.lineage.recipe["distill"]["teacher"] == "logreg@latest"
    side = student.distillation
    assert side is not None and side["temperature"] == 2 and side["alpha"] == 0.7
    assert side["teacher"]["metrics"]["accuracy"] > 0.8  # run by ORT on the student's held-out rows
    assert side["teacher"]["registered_metrics"] == {}  # a pushed file brings none
    assert side["student"]["metrics"] == student.metrics and student.metrics["accuracy"] > 0.8
    for who in ("teacher", "student"):
        assert side[who]["parameters"] > 0 and side[who]["file_bytes"] > 0 and side[who]["latency_ms"] > 0
    assert student.compile_report["parity"]["max_abs_diff"] < 1e-4  # exported and checked like any version

    # One path to the edge: the student (width 16) is rebuilt from its recipe, pruned and fine-tuned.
    bundle = export_edge(
        f"student:{student.version}",
        EdgeOptions(prune=0.5, quantize="int8", accuracy_budget=0.05),
        store=StoreSettings(home=Path(stack_env["FERMION_HOME"]), store_url=stack_env["FERMION_STORE_URL"]),
        signing=SigningSettings(home=Path(stack_env["FERMION_HOME"])),
    )
    assert bundle.archive and '"on": "torch module"' in json.dumps(bundle.manifest), bundle.manifest


async def test_a_teacher_that_bypassed_the_door_is_refused_by_the_trainer(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    registry = _session_store(stack_env)
    registry.register("default", "four-inputs", {"model.onnx": linear_onnx(n_in=4, n_out=3)}, linear_draft())
    x, y = _blobs()
    stored = DatasetStore(registry.store).put("default", "blobs-six", _npz(x, y), "npz")
    ref = DatasetRef(name="blobs-six", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    since = datetime.now(UTC) - timedelta(seconds=1)
    outcomes = []
    for teacher in ("four-inputs:1", "no-such-model"):
        recipe = Recipe(epochs=1, distill={"teacher": teacher})
        event = TrainingRequested(data=TrainingRequest(model_name="refused", dataset=ref, recipe=recipe))
        await bus.publish(event)
        outcomes.append(await _outcome(bus, event.id, since))
    wrong_shape, missing = outcomes
    assert isinstance(wrong_shape, TrainingFailed) and not wrong_shape.data.retryable
    assert "takes inputs of shape [batch, 4]" in wrong_shape.data.reason and "[6]" in wrong_shape.data.reason
    assert isinstance(missing, TrainingFailed) and "teacher 'no-such-model'" in missing.data.reason


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredIngest]:
    with secured_ingest(tmp_path_factory.mktemp("distill-http")) as served:
        yield served


def test_the_door_refuses_a_missing_or_mismatched_teacher_and_pins_a_good_one(
    ingest: SecuredIngest, tmp_path: Path
) -> None:
    env = ingest.cli_env(tmp_path / "client")
    ingest.registry.register("default", "four", {"model.onnx": linear_onnx(n_in=4, n_out=3)}, linear_draft())
    ingest.registry.register("default", "six", {"model.onnx": linear_onnx(n_in=6, n_out=3)}, linear_draft(n_in=6))
    ingest.registry.set_alias("default", "six", "production", 1)
    x, y = _blobs()
    DatasetStore(ingest.registry.store).put("default", "blobs", _npz(x, y), "npz")

    def distill(teacher: str) -> object:
        return CliRunner().invoke(
            cli, ["distill", "s", "--teacher", teacher, "--dataset", "blobs", "-o", "json"], env=env
        )

    missing = distill("nope")
    assert missing.exit_code == 1 and "400" in str(missing.exception), missing.output
    assert "teacher 'nope' does not exist" in str(missing.exception)
    no_version = distill("six:9")
    assert no_version.exit_code == 1 and "has no version 9" in str(no_version.exception)
    mismatched = distill("four")
    assert mismatched.exit_code == 1 and "400" in str(mismatched.exception)
    assert "teacher four:1 takes inputs of shape [batch, 4]; dataset 'blobs' has rows of 6 features" in str(
        mismatched.exception
    )
    picture_teacher = Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 8, 8, 1])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
        ),
        image={"height": 8, "width": 8, "channels": 1},
    )
    ingest.registry.register("default", "pictures", {"model.onnx": linear_onnx()}, picture_teacher)
    rows_for_pictures = distill("pictures")
    assert "teacher pictures:1 takes inputs of shape [batch, 8, 8, 1]; dataset 'blobs' has rows of 6 features" in str(
        rows_for_pictures.exception
    )
    pictures, labels = digit_pictures(8)
    write_class_folders(tmp_path / "digits", pictures[:40], labels[:40])
    archive = zip_folder(tmp_path / "digits", tmp_path / "digit-pictures.zip").read_bytes()
    DatasetStore(ingest.registry.store).put("default", "digit-pictures", archive, "zip")
    pictures_for_rows = CliRunner().invoke(
        cli, ["distill", "s", "--teacher", "four", "--dataset", "digit-pictures"], env=env
    )
    assert pictures_for_rows.exit_code == 1
    assert "teacher four:1 takes rows of features [batch, 4]; dataset 'digit-pictures' holds pictures" in str(
        pictures_for_rows.exception
    )
    accepted = distill("six@production")
    assert accepted.exit_code == 0, (accepted.output, accepted.exception)
    assert json.loads(accepted.output)["job_id"]


def test_versions_show_which_are_students_of_which_teacher(ingest: SecuredIngest, tmp_path: Path) -> None:
    lineage = Lineage(teacher={"name": "big", "version": 3, "content_sha256": "ab" * 32})
    ingest.registry.register("default", "small", {"model.onnx": linear_onnx()}, linear_draft())
    ingest.registry.register("default", "small", {"model.onnx": linear_onnx(seed=1)}, linear_draft(lineage=lineage))
    out = CliRunner().invoke(cli, ["models", "versions", "small"], env=ingest.cli_env(tmp_path / "client"))
    assert out.exit_code == 0, out.output
    taught = [line.split("│") for line in out.output.splitlines() if "big:3" in line]
    assert len(taught) == 1 and taught[0][1].strip() == "2", out.output
    listed = CliRunner().invoke(cli, ["models", "versions", "small", "-o", "json"], env=ingest.cli_env(tmp_path / "c2"))
    assert [v["teacher"] for v in json.loads(listed.output)["versions"]] == [None, "big:3"]
