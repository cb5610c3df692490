"""A job's training state saved to and restored from the checkpoint store (model_store/checkpoints.py).

A checkpoint holds the model and optimiser state, the epoch, the per-epoch history (loss and held-out
metrics so far) and the randomness: every epoch's shuffling and dropout derive from (seed, epoch,
rank) (`epoch_seed`), so a job resumed at epoch k trains epochs k+1.. exactly as an uninterrupted run
would, at any number of workers. It is written every N epochs or T seconds, whichever comes first,
and after the last epoch (a kill during export then costs no training).
"""

from __future__ import annotations

import io
import logging
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fermion.model_store import ObjectStore, StoreError
from fermion.model_store.checkpoints import CheckpointStore, Saved

from .settings import TrainingSettings

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to write checkpoints, and how long to keep them."""

    every_epochs: int = 5
    every_s: float = 60.0
    keep_last: int = 2
    finished_ttl_s: float = 3600.0
    abandoned_ttl_s: float = 7 * 86400.0

    @classmethod
    def from_settings(cls, s: TrainingSettings) -> CheckpointPolicy:
        """The policy a trainer's settings give."""
        return cls(
            s.checkpoint_every_epochs,
            s.checkpoint_every_s,
            s.checkpoint_keep_last,
            s.checkpoint_finished_ttl_s,
            s.checkpoint_abandoned_ttl_s,
        )


@dataclass(frozen=True)
class Restored:
    """A job picked up from its checkpoint: the epoch it had finished and what it measured so far."""

    epoch: int
    history: list[dict[str, Any]]
    seconds: float


@dataclass
class Checkpointer:
    """One job's checkpoints: restore once at the start, save when due; only a writer saves."""

    store: CheckpointStore
    tenant: str
    job_id: str
    policy: CheckpointPolicy = CheckpointPolicy()
    writer: bool = True
    saved: list[Saved] = field(default_factory=list)
    _last_epoch: int = 0
    _last_time: float = field(default_factory=time.monotonic)

    @classmethod
    def open(
        cls, store: ObjectStore, tenant: str, job_id: str, policy: CheckpointPolicy, *, writer: bool = True
    ) -> Checkpointer:
        """A checkpointer for one job over an object store."""
        return cls(CheckpointStore(store), tenant, job_id, policy, writer)

    def restore(self, module: nn.Module, optimiser: torch.optim.Optimizer) -> Restored | None:
        """Load the newest sound checkpoint into `module` and `optimiser`; None to start from scratch."""
        started = time.perf_counter()
        try:
            found = self.store.latest(self.tenant, self.job_id)
        except StoreError as exc:  # no checkpoint we can read: training from the start is always correct
            log.warning("job %s: checkpoints unreadable (%s); starting from epoch 0", self.job_id, exc)
            return None
        if found is None:
            return None
        try:
            state = torch.load(io.BytesIO(found.body), map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT:
                raise ValueError(f"checkpoint format {state.get('format')!r} is not {FORMAT}")
            module.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
        except (RuntimeError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            log.warning("job %s: checkpoint %s does not fit this job (%s); starting over", self.job_id, found.key, exc)
            return None
        self._last_epoch, self._last_time = found.epoch, time.monotonic()
        return Restored(found.epoch, list(state["history"]), time.perf_counter() - started)

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether `epoch`'s end is a checkpoint: N epochs or T seconds since the last, or the last epoch."""
        return self.writer and (
            epoch == epochs
            or epoch - self._last_epoch >= self.policy.every_epochs
            or time.monotonic() - self._last_time >= self.policy.every_s
        )

    def save(
        self,
        epoch: int,
        module: nn.Module,
        optimiser: torch.optim.Optimizer,
        history: list[dict[str, Any]],
        epochs: int = 0,
    ) -> Saved | None:
        """Write the state after `epoch`; a store failure is logged and training goes on."""
        buf = io.BytesIO()
        state = {
            "format": FORMAT,
            "epoch": epoch,
            "model": module.state_dict(),
            "optimiser": optimiser.state_dict(),
            "history": history,
        }
        torch.save(state, buf)
        try:
            # The last epoch's loss and metrics ride in the pointer: a watcher follows a job from it alone.
            last = {k: v for k, v in (history[-1] if history else {}).items() if k != "confusion"}
            meta = {"format": FORMAT, "epochs_total": epochs, **last}
            saved = self.store.save(self.tenant, self.job_id, epoch, buf.getvalue(), meta)
            self.store.prune(self.tenant, self.job_id, self.policy.keep_last)
        except StoreError as exc:
            log.warning("job %s: checkpoint of epoch %d not written: %s", self.job_id, epoch, exc)
            return None
        self._last_epoch, self._last_time = epoch, time.monotonic()
        self.saved.append(saved)
        return saved

    def finish(self) -> None:
        """The job registered its model: mark its checkpoints done and apply the retention rule."""
        try:
            self.store.finish(self.tenant, self.job_id)
            expired = self.store.expire(
                self.tenant, finished_after_s=self.policy.finished_ttl_s, abandoned_after_s=self.policy.abandoned_ttl_s
            )
        except StoreError as exc:  # retention is housekeeping: the next finished job retries it
            log.warning("checkpoint retention failed: %s", exc)
            return
        if expired:
            log.info("deleted the checkpoints of %d finished or abandoned jobs", len(expired))


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one rank's randomness in one epoch (dropout; shuffling derives from seed + epoch)."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63)
