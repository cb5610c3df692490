"""Edge bundles of a picture model (fine-tuned on its pixels) and of a table model (refused at the door, 400).

The picture model is a small CNN trained by the real trainer on an archive of digit pictures; its
bundle is built by the edge build's own entry (`edge_build.build`, what the ingest's child runs). The
table model is refused by the ingest route before any child process starts.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.events import DatasetRef, ImageContract, Recipe, TrainingRequest, TrainingRequested
from fermion.functions.ingest.edge_build import build
from fermion.functions.trainer.job import run_job
from fermion.model_store import DatasetStore, StoreSettings, generate_key_pair, open_registry
from tests.helpers.pictures import digit_pictures, png, zip_bytes
from tests.helpers.tables import table_draft, table_onnx
from tests.integration.secured_ingest import secured_ingest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store with a picture CNN trained on 12x12 digit pictures, and a table model beside it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two loaded cores shared with other work
    home = tmp_path_factory.mktemp("edge-kinds")
    generate_key_pair(home / "keys")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("FERMION_HOME", str(home))  # the edge build reads its store and key from the environment
    monkey.delenv("FERMION_STORE_URL", raising=False)
    registry = open_registry(StoreSettings(home=home))
    pictures, labels = digit_pictures(size=12)
    archive = zip_bytes({f"{label}/{i}.png": png(p) for i, (p, label) in enumerate(zip(pictures, labels, strict=True))})
    stored = DatasetStore(registry.store).put("default", "pictures", archive, "zip")
    ref = DatasetRef(name="pictures", sha256=stored.sha256, uri=stored.uri, format="zip", size=stored.size)
    recipe = Recipe(architecture="cnn", epochs=2, learning_rate=3e-3, image=ImageContract(width=12, height=12))
    run_job(TrainingRequested(data=TrainingRequest(model_name="glyphs", dataset=ref, recipe=recipe)), registry)
    registry.register("default", "churn", {"model.onnx": table_onnx()}, table_draft())
    yield home
    monkey.undo()
    torch.set_num_threads(threads)


def test_a_picture_models_bundle_is_fine_tuned_on_its_pixels(home: Path, tmp_path: Path) -> None:
    options = {"prune": 0.3, "quantize": "int8", "format": "ort", "accuracy_budget": 1.0, "finetune_epochs": 1}
    outcome = build({"tenant": "default", "ref": "glyphs:1", "options": options}, tmp_path / "b.tar")
    assert outcome == {"ok": True}, outcome
    with tarfile.open(tmp_path / "b.tar", "r:") as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        manifest: dict[str, Any] = json.loads(f.read())
    assert manifest["optimisations"]["prune"]["finetune_epochs"] > 0  # the run's pictures were in the store
    assert manifest["accuracy"]["measured"] and manifest["accuracy"]["samples"] > 300
    assert manifest["contract"]["image"]["width"] == 12, manifest["contract"]


def test_a_table_model_is_refused_at_the_door_naming_why(home: Path, tmp_path: Path) -> None:
    with secured_ingest(home, {"OMP_NUM_THREADS": "1"}) as served:
        env = served.cli_env(tmp_path / "client")
        out = tmp_path / "churn.tar"
        result = CliRunner().invoke(app, ["models", "export", "churn", "--edge", "-o", str(out)], env=env)
    assert result.exit_code != 0 and not out.exists()
    assert "table model" in result.output and "one input per column" in result.output, result.output
