"""One rank of a data-parallel job, as torch's elastic launcher starts it.

    python -m torch.distributed.run --nproc-per-node N ... -m fermion.training.rank SPEC

SPEC is a path to (or the text of) a `RankSpec`. Every rank fetches the dataset from the object store
and trains its shard (training/loop.py); rank 0 alone writes: checkpoints to the store,
progress lines and the result to the job's work directory. A restarted group resumes from the
newest checkpoint. On one host the group meets through a file store and gloo on loopback, so
nothing listens beyond 127.0.0.1; across hosts (Kubernetes) it uses the launcher's env:// address.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict

from fermion.events import DatasetRef, Recipe
from fermion.model_store import DatasetStore, StoreSettings, open_store

from .checkpoints import Checkpointer, CheckpointPolicy
from .data import load_dataset
from .loop import Ranks, train
from .memory import fix_mmap_threshold
from .settings import RankEnv

_PR_SET_PDEATHSIG = 1


class RankSpec(BaseModel):
    """Everything a rank needs to train its part of one job."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    tenant: str
    dataset: DatasetRef
    recipe: Recipe
    store_url: str
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    policy: CheckpointPolicy = CheckpointPolicy()
    workdir: str | None = None
    """The launching trainer's directory for progress lines and the result; None on a cluster."""
    single_host: bool = True


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies: a killed trainer leaves no orphan ranks."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _join_group(spec: RankSpec, env: RankEnv) -> str:
    """Join the job's process group: NCCL when every rank has a GPU, else gloo; the rank's device."""
    gpu = torch.cuda.is_available() and torch.cuda.device_count() > env.local_rank
    device = f"cuda:{env.local_rank}" if gpu else "cpu"
    if gpu:
        torch.cuda.set_device(env.local_rank)
    if not spec.single_host or spec.workdir is None:
        dist.init_process_group("nccl" if gpu else "gloo")  # env:// from the launcher (MASTER_ADDR, ...)
        return device
    store = dist.FileStore(str(Path(spec.workdir) / f"group-{env.torchelastic_restart_count}"), env.world_size)
    if gpu:
        dist.init_process_group("nccl", store=store, rank=env.rank, world_size=env.world_size)
        return device
    options = dist.ProcessGroupGloo._Options()  # type: ignore[attr-defined]  # the stubs lack it
    options._devices = [dist.ProcessGroupGloo.create_device(hostname="127.0.0.1")]
    dist.init_process_group("gloo", store=store, rank=env.rank, world_size=env.world_size, pg_options=options)
    return device


class ProgressLines:
    """Rank 0's epochs as JSON lines, one `write` each, for the launching trainer to relay."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: object) -> None:
        line = json.dumps({"epoch": epoch, "epochs": epochs, "loss": loss, "metrics": metrics, "extra": extra})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)


def run(spec: RankSpec, env: RankEnv) -> None:
    """Train this rank's part of the job."""
    device = _join_group(spec, env)
    try:
        local = StoreSettings()  # the endpoint and region of this host, unless the spec names them
        store = open_store(
            spec.store_url,
            s3_endpoint_url=spec.s3_endpoint_url or local.s3_endpoint_url,
            s3_region=spec.s3_region or local.s3_region,
        )
        ds_ref = spec.dataset
        with tempfile.TemporaryDirectory(prefix="fermion-rank-") as tmp:
            path = DatasetStore(store).fetch(
                spec.tenant, ds_ref.name, ds_ref.sha256, ds_ref.format, Path(tmp) / f"data.{ds_ref.format}"
            )
            r = spec.recipe  # a table is fitted on the same split as the job's own load: the same schema
            ds = load_dataset(
                path, ds_ref.format, r.label_column, r.image, task=r.task, test_fraction=r.test_fraction, seed=r.seed
            )
        lead = env.rank == 0
        checkpointer = Checkpointer.open(store, spec.tenant, spec.job_id, spec.policy, writer=lead)
        progress = ProgressLines(Path(spec.workdir) / "progress.jsonl") if lead and spec.workdir else None
        ranks = Ranks(env.rank, env.world_size, env.torchelastic_restart_count, device)
        train(ds, spec.recipe, progress, checkpointer, ranks)
        dist.barrier()  # rank 0 may still be writing the last checkpoint: leave together
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    """Entry point: `python -m fermion.training.rank SPEC`."""
    die_with_parent()
    fix_mmap_threshold()
    arg = (argv if argv is not None else sys.argv[1:])[0]
    text = arg if arg.lstrip().startswith("{") else Path(arg).read_text()
    run(RankSpec.model_validate_json(text), RankEnv())


if __name__ == "__main__":
    main()
