"""A data-parallel job launched by the trainer that took it, with torch's elastic launcher on this host.

The trainer runs `python -m torch.distributed.run` (torchrun) with `workers` ranks of
training/rank.py, and waits for it while relaying rank 0's epochs as progress events. The
launcher's agent restarts the whole group (up to `max_restarts`) when a rank dies, and the group
resumes from the job's newest checkpoint. When it ends, the trainer reads the final checkpoint back
from the store and exports and registers it itself, once, as for a job of one process.

Everything stays on loopback: the rendezvous is a file store in the job's directory (not a TCP
store, which would listen on every interface), and gloo binds 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from fermion.events import TrainingRequested
from fermion.model_store import ObjectStore

from .architectures import build
from .checkpoints import Checkpointer, CheckpointPolicy
from .data import Dataset, split
from .errors import JobError
from .loop import ProgressFn, Trained, last_evaluation
from .rank import RankSpec, die_with_parent
from .settings import TrainingSettings

log = logging.getLogger(__name__)

_POLL_S = 0.2  # how often the waiting trainer relays new progress lines


@dataclass(frozen=True)
class DistributedOptions:
    """How a trainer runs the ranks of a distributed job."""

    max_restarts: int = 3
    launcher: Literal["local", "kubernetes"] = "local"
    rank_job_template: Path | None = None
    namespace: str = "fermion"
    image: str | None = None

    @classmethod
    def from_settings(cls, s: TrainingSettings) -> DistributedOptions:
        """The options a trainer's settings give."""
        return cls(s.elastic_max_restarts, s.distributed_launcher, s.rank_job_template, s.k8s_namespace, s.rank_image)


class DistributedJobFailed(JobError):
    """The rank group failed more often than the elastic launcher may restart it (a transient fault)."""


def check_buildable(event: TrainingRequested, ds: Dataset) -> None:
    """Build the model once here, so a bad dataset or architecture fails the job before any rank starts."""
    recipe = event.data.recipe
    train_idx, _ = split(ds, recipe.test_fraction, recipe.seed)
    build(recipe.architecture, ds.x[train_idx[:1024]], ds.outputs)


def launch_command(workers: int, max_restarts: int, workdir: Path, run_id: str, spec_path: Path) -> list[str]:
    """The torchrun command line for one job of `workers` ranks on this host."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={workers}",
        f"--max-restarts={max_restarts}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={workdir / 'rendezvous'}",
        "--rdzv-conf=store_type=file",
        "--local-addr=127.0.0.1",
        "--monitor-interval=0.2",
        f"--rdzv-id={run_id}",
        "-m",
        "fermion.training.rank",
        str(spec_path),
    ]


def train_distributed(
    event: TrainingRequested,
    ds: Dataset,
    store: ObjectStore,
    workdir: Path,
    *,
    policy: CheckpointPolicy,
    max_restarts: int,
    on_epoch: ProgressFn | None = None,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
) -> Trained:
    """Train the event's recipe with `recipe.workers` ranks; return the trained module as rank 0 left it."""
    started = time.perf_counter()
    recipe = event.data.recipe
    check_buildable(event, ds)
    spec = RankSpec(
        job_id=event.id,
        tenant=event.tenant,
        dataset=event.data.dataset,
        recipe=recipe,
        store_url=store.url,
        s3_endpoint_url=s3_endpoint_url,
        s3_region=s3_region,
        policy=policy,
        workdir=str(workdir),
    )
    spec_path = workdir / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    progress = workdir / "progress.jsonl"
    agent_log = workdir / "launcher.log"
    cmd = launch_command(recipe.workers, max_restarts, workdir, event.id[:32], spec_path)
    # A TCP store shared with the workers would listen on every interface; the file store needs none.
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "OMP_NUM_THREADS": "1"}
    with open(agent_log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent)
    offset = 0
    try:
        while True:
            try:
                code = proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                code = None
            offset = _relay(progress, offset, on_epoch)
            if code is not None:
                break
    finally:
        if proc.poll() is None:  # cancelled, or the trainer is stopping: the agent stops its ranks
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if code != 0:
        tail = agent_log.read_text(errors="replace")[-1500:]
        raise DistributedJobFailed(f"the {recipe.workers}-rank group failed (launcher exit {code}): {tail}")
    return final_model(event, ds, store, policy, time.perf_counter() - started)


def final_model(
    event: TrainingRequested, ds: Dataset, store: ObjectStore, policy: CheckpointPolicy, took_s: float
) -> Trained:
    """The trained module, from the checkpoint rank 0 wrote after the last epoch."""
    recipe = event.data.recipe
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    x_train = ds.x[train_idx]
    module = build(recipe.architecture, x_train, ds.outputs)
    restored = Checkpointer.open(store, event.tenant, event.id, policy, writer=False).restore(
        module, torch.optim.AdamW(module.parameters(), lr=recipe.learning_rate)
    )
    if restored is None or restored.epoch != recipe.epochs:
        got = "none" if restored is None else f"epoch {restored.epoch}"
        raise DistributedJobFailed(f"the group ended without a final checkpoint (found {got} of {recipe.epochs})")
    module.eval()
    return Trained(
        module,
        dict(restored.history[-1]["metrics"]),
        ds.x[test_idx],
        ds.y[test_idx],
        x_train[: min(len(x_train), 512)],
        ds.labels,
        took_s,
        evaluation=last_evaluation(restored.history, ds),
    )


def _relay(path: Path, offset: int, on_epoch: ProgressFn | None) -> int:
    """Hand every complete progress line after `offset` to `on_epoch`; the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    done = chunk.rfind(b"\n") + 1
    for line in chunk[:done].splitlines():
        report = json.loads(line)
        if on_epoch:
            on_epoch(report["epoch"], report["epochs"], report["loss"], report["metrics"], **report["extra"])
    return offset + done
