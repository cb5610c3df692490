"""The CLI as a new user and a script meet it: real commands (`python -m fermion`) against a real stack.

Covers the first hour (a header CSV uploaded, trained with the default label column, served and
predicted from a header CSV), `-o json|yaml` parsed, unique-prefix ids, `models push` through
ingest, every user error as one line on stderr with exit 1, and a base install (no torch, no onnx)
driving a remote stack through FERMION_URL and FERMION_API_KEY alone.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from fermion.client import Client
from fermion.infra import Stack, StackSettings
from tests.helpers import free_port, linear_onnx

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _env(s: StackSettings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "80",  # narrow: ids must not be cut
        **extra,
    }


def fermion(s: StackSettings, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=_env(s, **env), capture_output=True, text=True, timeout=timeout
    )


def one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user error: exit 1, nothing but one `error: ...` line on stderr, no traceback."""
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.normal(size=(n, 4)) + y[:, None] * 3).astype(np.float32), y


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray | None, header: bool) -> None:
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    lines = [",".join([*cols, "target"] if y is not None else cols)] if header else []
    for i, row in enumerate(x):
        values = [f"{v:.4f}" for v in row] + ([str(int(y[i]))] if y is not None else [])
        lines.append(",".join(values))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(300)
def test_first_hour_from_a_header_csv_to_a_served_prediction(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    x, y = _blobs(240, 0)
    _write_csv(tmp_path / "Iris.csv", x, y, header=True)  # scikit-learn frames call the label `target`
    up = fermion(s, "upload", str(tmp_path / "Iris.csv"))
    assert up.returncode == 0, up.stderr
    assert "dataset iris (from 'Iris'" in up.stdout  # the normalisation is said
    assert "mlp" in fermion(s, "train", "--list").stdout
    trained = fermion(s, "train", "Iris", "--dataset", "iris", "--epochs", "8", "--learning-rate", "0.01", "--follow")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "note: model name 'Iris' → 'iris'" in trained.stderr and "label column 'target'" in trained.stdout

    jobs = json.loads(fermion(s, "jobs", "list", "-o", "json").stdout)
    (job,) = [j for j in jobs if j["model_name"] == "iris"]
    assert job["state"] == "completed" and job["epoch"] == job["epochs"] == 8
    table = fermion(s, "jobs", "list").stdout  # 80 columns: the id folds onto more lines, never cut
    assert "…" not in table and job["job_id"][:16] in table and job["job_id"][-8:] in table
    shown = yaml.safe_load(fermion(s, "jobs", "show", job["job_id"][:8], "-o", "yaml").stdout)
    assert shown["job_id"] == job["job_id"] and shown["version"] == 1

    swept = fermion(
        s,
        "sweep",
        "iris",
        "--dataset",
        "iris",
        "--epochs",
        "3",
        "--learning-rates",
        "0.01,0.003",
        "--alias",
        "best",
        "--follow",
        timeout=240,
    )
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "2 of 2 trials completed" in swept.stdout and "learning rate 0.003" in swept.stdout  # trials told apart
    last = swept.stdout.strip().splitlines()[-1]  # the winner, its metric, its version and the gate's decision
    assert "winner" in last and "macro_f1" in last and "iris version 2" in last and "promoted" in last, last

    tx, ty = _blobs(60, 1)
    _write_csv(tmp_path / "test_header.csv", tx, ty, header=True)  # the training file's shape, label included
    _write_csv(tmp_path / "test_plain.csv", tx, None, header=False)
    for name in ("test_header.csv", "test_plain.csv"):
        out = fermion(s, "predict", "iris", "--input", str(tmp_path / name), "-o", "json")
        assert out.returncode == 0, out.stderr
        assert ("ignoring column 'target'" in out.stderr) is (name == "test_header.csv")
        predicted = np.asarray([int(p["prediction"]) for p in json.loads(out.stdout)])  # stdout is the data alone
        assert np.mean(predicted == ty) >= 0.9
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps([float(v) for v in r]) for r in tx))
    out = fermion(s, "predict", "iris", "--input", str(tmp_path / "rows.jsonl"), "-o", "json")
    assert out.returncode == 0 and len(json.loads(out.stdout)) == 60, out.stderr


def test_models_push_goes_through_ingest_and_lists_as_json(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    (tmp_path / "lin.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))
    pushed = fermion(s, "models", "push", "lin", str(tmp_path / "lin.onnx"), "--labels", "a,b,c", "-o", "json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["version"] == 1
    listed = json.loads(fermion(s, "models", "list", "-o", "json").stdout)
    assert {"name": "lin", "versions": [1]}.items() <= next(m for m in listed if m["name"] == "lin").items()
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    one_line_error(fermion(s, "models", "push", "lin", str(tmp_path / "junk.onnx")), "400", "not an ONNX model")


def test_every_user_error_is_one_line_and_exit_1(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    (tmp_path / "t.csv").write_text("a,b,label\n" + "1,2,0\n3,4,1\n" * 10)
    assert fermion(s, "upload", str(tmp_path / "t.csv")).returncode == 0
    one_line_error(
        fermion(s, "train", "tab", "--dataset", "t", "--label-column", "kind"),
        "400",
        "no label column 'kind'; its columns are a, b, label",
    )
    one_line_error(fermion(s, "train", "tab", "--dataset", "nope"), "404", "upload it first")
    (tmp_path / "x.json").write_text("{}")
    one_line_error(fermion(s, "upload", str(tmp_path / "x.json")), "400", "unsupported file")
    one_line_error(fermion(s, "predict", "ghost", "--input", str(tmp_path / "t.csv")), "404")
    (tmp_path / "wide.csv").write_text("1,2,3,4,5,6\n")
    (tmp_path / "lin.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))
    assert fermion(s, "models", "push", "widecheck", str(tmp_path / "lin.onnx")).returncode == 0
    one_line_error(fermion(s, "predict", "widecheck", "--input", str(tmp_path / "wide.csv")), "takes 4 features")
    (tmp_path / "words.csv").write_text("a,b,c,d\n1,x,3,4\n")
    one_line_error(fermion(s, "predict", "widecheck", "--input", str(tmp_path / "words.csv")), "'x' is not a number")
    one_line_error(fermion(s, "jobs", "show", "no-such-job"), "404", "no job 'no-such-job'")
    one_line_error(fermion(s, "models", "show", "[bold]x[/]:1"), "[bold]x[/]")  # brackets print literally
    one_line_error(fermion(s, "train", "tab"), "--dataset")
    assert "--install-completion" in fermion(s, "--help").stdout  # shell completion is on
    one_line_error(fermion(s, "models", "list", FERMION_API_KEY="fmn_bogus_key"), "401")
    closed = f"http://127.0.0.1:{free_port()}"
    one_line_error(fermion(s, "models", "list", FERMION_URL=closed), f"no Fermion stack answers at {closed}")


class _Gateway(http.server.ThreadingHTTPServer):
    """One base URL in front of both functions (/v2 and `:predict` → inference, the rest → ingest), as a
    deployment has (serverless.yml: API Gateway's routes)."""

    def __init__(self, ingest: str, inference: str) -> None:
        self.ingest, self.inference = ingest, inference
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _Gateway

    def _forward(self) -> None:
        to_inference = self.path.startswith("/v2") or self.path.split("?")[0].endswith(":predict")
        base = self.server.inference if to_inference else self.server.ingest
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = httpx.request(self.command, base + self.path, content=body, headers=headers, timeout=60)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


def _base_install_view(tmp_path: Path) -> Path:
    """This venv's site-packages without torch, onnx, onnxscript and scikit-learn: a base install's view."""
    import site

    (site_packages,) = [Path(p) for p in site.getsitepackages() if Path(p).name == "site-packages"]
    view = tmp_path / "base-site"
    view.mkdir()
    hidden = ("torch", "onnx", "onnxscript", "sklearn", "scikit_learn", "functorch", "torchgen")
    for entry in site_packages.iterdir():
        stem = entry.name.split("-")[0].split(".")[0].lower()
        if stem not in hidden:
            (view / entry.name).symlink_to(entry)
    return view


def test_a_base_install_drives_a_remote_stack_with_url_and_key_only(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    with Client.from_settings(s) as admin:
        key = admin.create_key("default", ["read", "infer"], name="remote")["key"]
        (tmp_path / "lin.onnx").write_bytes(linear_onnx(n_in=4, n_out=3))
        admin.push("remote-lin", tmp_path / "lin.onnx", labels=["a", "b", "c"])
    gateway = _Gateway(s.ingest_url, s.inference_url)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    view = _base_install_view(tmp_path)
    (tmp_path / "rows.csv").write_text("f1,f2,f3,f4\n1,2,3,4\n0,0,0,1\n")
    runner = (
        "import importlib.util, site, sys\n"
        f"site.addsitedir({str(view)!r})\n"
        "hidden = [m for m in ('torch', 'onnx', 'sklearn') if importlib.util.find_spec(m)]\n"
        "assert not hidden, hidden\n"
        "sys.argv = ['fermion', *sys.argv[1:]]\n"
        "from fermion.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')]\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),  # no ~/.fermion, no admin key: only what the variables say
        "FERMION_URL": f"http://127.0.0.1:{gateway.server_address[1]}",
        "FERMION_API_KEY": key,
        "COLUMNS": "120",
    }

    def base(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-I", "-S", "-c", runner, *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    try:
        version = base("--version")
        assert version.returncode == 0 and version.stdout.startswith("fermion "), version.stderr
        listed = base("models", "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert "remote-lin" in listed.stdout
        predicted = base("predict", "remote-lin", "--input", str(tmp_path / "rows.csv"), "-o", "json")
        assert predicted.returncode == 0, predicted.stderr
        assert {row["prediction"] for row in json.loads(predicted.stdout)} <= {"a", "b", "c"}
        refused = base("models", "push", "x", str(tmp_path / "lin.onnx"))  # a read+infer key may not push
        one_line_error(refused, "403", "upload")
    finally:
        gateway.shutdown()
        gateway.server_close()
