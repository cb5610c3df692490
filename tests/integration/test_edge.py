"""Edge bundles of a real digits CNN: pruned, int8, ORT format, signed; run in a venv with only ORT and numpy.

`fermion models export --edge` asks a real ingest process for the bundle (POST /v1/models/{name}/edge),
which builds it in a child process (the ingest server never imports torch) from its own store.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from typer.testing import CliRunner

from fermion.cli import app
from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.functions.trainer.job import run_job
from fermion.model_store import DatasetStore, StoreSettings, generate_key_pair, open_registry
from tests.integration.secured_ingest import SecuredIngest, secured_ingest

pytestmark = pytest.mark.integration
RUNNER_SRC = Path(__file__).resolve().parents[2] / "compile" / "edge_runner"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Training and fine-tuning here share two loaded cores: a second torch thread only spins."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with scikit-learn's digits and a registered digits CNN trained on it."""
    from sklearn.datasets import load_digits

    home = tmp_path_factory.mktemp("edge-home")
    generate_key_pair(home / "keys")  # the stack's key: the version is signed, as the ingest verifies
    settings = StoreSettings(home=home)
    registry = open_registry(settings)
    d = load_digits()
    buf = io.BytesIO()
    np.savez(buf, x=d.data.astype(np.float32), y=d.target)
    stored = DatasetStore(registry.store).put("default", "digits", buf.getvalue(), "npz")
    ref = DatasetRef(name="digits", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    event = TrainingRequested(
        data=TrainingRequest(
            model_name="digits", dataset=ref, recipe=Recipe(architecture="cnn", epochs=8, learning_rate=2e-3)
        )
    )
    manifest = run_job(event, registry)
    return {"home": home, "manifest": manifest, "x": d.data.astype(np.float32), "y": d.target}


@pytest.fixture(scope="module")
def digits_ingest(digits_home: dict[str, Any]) -> Iterator[SecuredIngest]:
    """The ingest function over the digits store, which the CLI reaches by URL only."""
    with secured_ingest(digits_home["home"], {"OMP_NUM_THREADS": "1"}) as served:  # two loaded cores
        yield served


def _export(ingest: SecuredIngest, out: Path, *args: str) -> Any:
    env = ingest.cli_env(out.parent / "client")
    return CliRunner().invoke(app, ["models", "export", "digits", "--edge", "-o", str(out), *args], env=env)


@pytest.fixture(scope="module")
def bundle(digits_ingest: SecuredIngest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN exported with pruning 0.5, int8 and the ORT format."""
    out = tmp_path_factory.mktemp("bundle") / "digits.tar"
    result = _export(digits_ingest, out, "--prune", "0.5", "--quantize", "int8", "--format", "ort")
    assert result.exit_code == 0, result.output
    return out


def _manifest(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:") as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        return dict(json.loads(f.read()))


def test_pruned_int8_bundle_is_4x_smaller_within_one_point(bundle: Path, digits_home: dict[str, Any]) -> None:
    manifest = _manifest(bundle)
    fp32_bytes = digits_home["manifest"].files["model.onnx"].size
    assert manifest["sizes"]["served_fp32_bytes"] == fp32_bytes
    assert bundle.stat().st_size * 4 <= fp32_bytes, (bundle.stat().st_size, fp32_bytes)  # runner included
    acc = manifest["accuracy"]
    assert acc["measured"] and acc["samples"] > 300
    assert acc["bundle"] >= acc["served"] - 0.01, acc
    assert manifest["optimisations"]["prune"]["sparsity"] >= 0.5
    assert manifest["optimisations"]["prune"]["finetune_epochs"] > 0  # the run's dataset was in the store
    assert manifest["optimisations"]["quantize"]["type"] == "int8"
    assert manifest["model"]["file"] == "model.ort.gz" and manifest["model"]["format"] == "ort"
    assert manifest["source"]["version"] == digits_home["manifest"].version


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv whose site-packages holds only onnxruntime and numpy (linked from this environment)."""
    root = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=60)
    (site,) = root.glob("lib/python*/site-packages")
    have = Path(np.__file__).parent.parent
    assert Path(onnxruntime.__file__).parent.parent == have
    for name in ("numpy", "numpy.libs", "onnxruntime"):
        if (have / name).exists():
            (site / name).symlink_to(have / name)
    python = root / "bin" / "python"
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('torch', 'fermion', 'cryptography', 'onnx', 'sklearn') if u.find_spec(m)])"
    )
    found = subprocess.run([python, "-c", probe], cwd=root, capture_output=True, text=True, check=True, timeout=60)
    assert found.stdout.strip() == "[]", found.stdout
    return python


def _extract(bundle: Path, where: Path) -> Path:
    where.mkdir()
    with tarfile.open(bundle, "r:") as tar:
        tar.extractall(where, filter="data")
    return where


def test_the_runner_verifies_and_predicts_with_only_onnxruntime_and_numpy(
    bundle: Path, bare_venv: Path, digits_home: dict[str, Any], tmp_path: Path
) -> None:
    folder = _extract(bundle, tmp_path / "extracted")
    x, y = digits_home["x"][:200], digits_home["y"][:200]
    with_header = tmp_path / "rows.csv"
    with_header.write_text(",".join(f"p{i}" for i in range(64)) + "\n" + "\n".join(",".join(map(str, r)) for r in x))
    without = tmp_path / "bare.csv"
    without.write_text("\n".join(",".join(map(str, r)) for r in x) + "\n")
    outs = []
    for csv in (with_header, without):
        run = subprocess.run(
            [bare_venv, "-m", "fermion_edge", str(bundle), "predict", str(csv)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        outs.append(run.stdout.split())
    assert outs[0] == outs[1] and len(outs[0]) == 200
    assert np.mean(np.asarray(outs[0]) == y.astype(str)) >= 0.95


def test_a_bundle_with_one_flipped_byte_is_refused(bundle: Path, bare_venv: Path, tmp_path: Path) -> None:
    folder = _extract(bundle, tmp_path / "extracted")
    raw = bundle.read_bytes()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0x01]) + raw[len(raw) // 2 + 1 :])
    csv = tmp_path / "one.csv"
    csv.write_text(",".join(["0"] * 64) + "\n")
    run = subprocess.run(
        [bare_venv, "-m", "fermion_edge", str(bad), "predict", str(csv)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3 and "refused" in run.stderr and not run.stdout, (run.returncode, run.stderr)
    # Every position, in-process: a flip anywhere in the file (headers, members, signature, padding) is refused.
    sys.path.insert(0, str(RUNNER_SRC))
    try:
        from fermion_edge import BundleRefused, open_bundle
    finally:
        sys.path.remove(str(RUNNER_SRC))
    open_bundle(bundle)  # the intact bundle passes
    step = max(1, len(raw) // 150)
    # Sampled through the signed members, and every byte from SIGNATURE's header to the end.
    for pos in [*range(0, 16), *range(16, len(raw), step), *range(len(raw) - 4 * 512, len(raw))]:
        bad.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0x01]) + raw[pos + 1 :])
        with pytest.raises(BundleRefused):
            open_bundle(bad)


def test_a_bundle_from_another_signer_is_refused_when_the_key_is_pinned(bundle: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(RUNNER_SRC))
    try:
        from fermion_edge import BundleRefused, open_bundle
    finally:
        sys.path.remove(str(RUNNER_SRC))
    signer = open_bundle(bundle).public_key
    assert open_bundle(bundle, trusted_key=signer).key_id
    with pytest.raises(BundleRefused, match="not the trusted key"):
        open_bundle(bundle, trusted_key=bytes(32))


def test_budgets_refuse_a_degraded_or_oversized_bundle(digits_ingest: SecuredIngest, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    result = _export(digits_ingest, out, "--prune", "0.95", "--finetune-epochs", "0", "--accuracy-budget", "0")
    assert result.exit_code == 1 and "refused" in result.output and "below the served version" in result.output
    result = _export(digits_ingest, out, "--quantize", "int8", "--max-bytes", "1000")
    assert result.exit_code == 1 and "size budget is 1000" in result.output, result.output
    assert not out.exists()


def test_a_pushed_model_without_its_data_is_pruned_on_the_graph_and_must_opt_out_of_measuring(
    tmp_path: Path,
) -> None:
    from tests.helpers import linear_draft, linear_onnx

    home = tmp_path / "home"
    generate_key_pair(home / "keys")
    open_registry(StoreSettings(home=home)).register(
        "default", "digits", {"model.onnx": linear_onnx(64, 10)}, linear_draft(64, 10)
    )
    out = tmp_path / "pushed.tar"
    with secured_ingest(home) as ingest:
        refused = _export(ingest, out, "--prune", "0.5", "--quantize", "int8")
        assert refused.exit_code == 1 and "cannot measure" in refused.output, refused.output
        result = _export(ingest, out, "--prune", "0.5", "--quantize", "int8", "--format", "onnx", "--no-accuracy-check")
    assert result.exit_code == 0, result.output
    manifest = _manifest(out)
    assert manifest["accuracy"] == {"measured": False}
    assert manifest["optimisations"]["prune"]["on"].startswith("ONNX initializers")
    assert manifest["optimisations"]["prune"]["sparsity"] >= 0.5
    assert manifest["model"]["file"] == "model.onnx.gz" and manifest["model"]["format"] == "onnx"
