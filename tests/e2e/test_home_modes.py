"""What `fermion up` writes under FERMION_HOME is its user's alone: directories 0700, files 0600 (issue 25)."""

from __future__ import annotations

import io
import stat
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.infra import Stack
from tests.helpers import bearer, linear_onnx

pytestmark = pytest.mark.e2e


def _npz(n: int = 60) -> bytes:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    buf = io.BytesIO()
    np.savez(buf, x=(rng.normal(size=(n, 4)) + y[:, None] * 3).astype(np.float32), y=y)
    return buf.getvalue()


def _loose(home: Path) -> list[str]:
    """Everything under `home` that another user could read, as 'mode path'."""
    found = []
    for path in sorted(home.rglob("*")):
        try:  # the stack runs on: a temporary file may go between listing and looking
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            continue
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            continue
        if mode != (0o700 if path.is_dir() else 0o600):
            found.append(f"{mode:o} {path.relative_to(home)}")
    return found


def test_everything_the_stack_writes_under_its_home_is_private(stack: Stack) -> None:
    settings, home = stack.settings, stack.settings.home
    admin = bearer(stack.identity.admin_key() or "")
    with httpx.Client(base_url=settings.ingest_url, headers=admin, timeout=30) as ingest:
        r = ingest.post("/v1/datasets", files={"file": ("toy.npz", _npz())})
        assert r.status_code == 201, r.text
        r = ingest.post(
            "/v1/trainings", json={"model_name": "toy", "dataset": {"name": "toy"}, "recipe": {"epochs": 1}}
        )
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        r = ingest.post("/v1/models/lin/versions", files=[("model", ("lin.onnx", linear_onnx()))])
        assert r.status_code == 201, r.text
        deadline, after = time.monotonic() + 90, 0
        while time.monotonic() < deadline:
            polled = ingest.get(f"/v1/jobs/{job}/events", params={"after": after, "wait_s": 5}).json()
            after = polled["next"]
            if polled["ended"]:
                break
        assert polled["ended"] and polled["job"]["state"] == "completed", polled
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    r = httpx.post(f"{settings.inference_url}/v2/models/lin/infer", json=body, headers=admin, timeout=30)
    assert r.status_code == 200, r.text
    loose = _loose(home)
    assert not loose, "readable by others under FERMION_HOME:\n" + "\n".join(loose[:40])
