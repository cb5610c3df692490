"""A distributed job's ranks as a Kubernetes indexed Job (infra/k8s/components/distributed-training).

The trainer that took the training.requested event fills the mounted rank Job template in for the
job (`rank_job`), creates it, follows rank 0's checkpoint pointer for progress while the pods
train, and, once the Job completes, exports and registers the final checkpoint itself, exactly as
after a local launch (training/distributed.py). A redelivered event finds the Job an
earlier delivery created (same name) and waits for it instead of starting a second one.

Needs the `kubernetes` client (`pip install 'fermion[kubernetes]'`) and, in the pod, the
service account of the component's Role.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

from fermion.events import TrainingRequested
from fermion.model_store import ObjectStore
from fermion.model_store.checkpoints import CheckpointStore
from fermion.training.checkpoints import CheckpointPolicy
from fermion.training.data import Dataset
from fermion.training.distributed import DistributedJobFailed, DistributedOptions, check_buildable, final_model
from fermion.training.loop import ProgressFn, Trained
from fermion.training.rank import RankSpec

_POLL_S = 2.0
_RDZV_PORT = 29400


def job_name(job_id: str) -> str:
    """A DNS-1123 name for the job's rank Job, the same for every delivery of the event."""
    return "fermion-ranks-" + (re.sub(r"[^a-z0-9-]", "-", job_id.lower()).strip("-")[:40] or "job")


def rank_job(template: dict[str, Any], spec: RankSpec, workers: int, image: str | None = None) -> dict[str, Any]:
    """The template filled in for one job: name, parallelism, the rendezvous endpoint, the rank spec and
    the image (the trainer's own, FERMION_RANK_IMAGE: kustomize cannot rewrite one in ConfigMap data)."""
    job = copy.deepcopy(template)
    name = job_name(spec.job_id)
    job["metadata"]["name"] = name
    job["spec"]["completions"] = job["spec"]["parallelism"] = workers
    values = {
        "WORKERS": str(workers),
        "RDZV_ENDPOINT": f"{name}-0.{job['spec']['template']['spec']['subdomain']}:{_RDZV_PORT}",
        "FERMION_RANK_SPEC": spec.model_copy(update={"single_host": False, "workdir": None}).model_dump_json(),
    }
    (container,) = job["spec"]["template"]["spec"]["containers"]
    if image:
        container["image"] = image
    for var in container.get("env", []):
        if var["name"] in values:
            var["value"] = values.pop(var["name"])
    if values:
        raise ValueError(f"the rank Job template lacks the variables {sorted(values)}")
    return job


def train_on_cluster(
    event: TrainingRequested,
    ds: Dataset,
    store: ObjectStore,
    *,
    policy: CheckpointPolicy,
    options: DistributedOptions,
    on_epoch: ProgressFn | None = None,
) -> Trained:
    """Run the event's ranks as an indexed Job and return the trained module rank 0 left in the store."""
    try:
        import yaml
        from kubernetes import client, config
    except ImportError as exc:
        raise ImportError("the Kubernetes launcher needs the client: pip install 'fermion[kubernetes]'") from exc
    if options.rank_job_template is None:
        raise DistributedJobFailed("FERMION_RANK_JOB_TEMPLATE is not set: mount the component's fermion-rank-job")
    started = time.perf_counter()
    check_buildable(event, ds)
    spec = RankSpec(
        job_id=event.id,
        tenant=event.tenant,
        dataset=event.data.dataset,
        recipe=event.data.recipe,
        store_url=store.url,
        policy=policy,
        workdir=None,
        single_host=False,
    )
    template = yaml.safe_load(Path(options.rank_job_template).read_text())
    manifest = rank_job(template, spec, event.data.recipe.workers, options.image)
    config.load_incluster_config()
    batch = client.BatchV1Api()
    name = manifest["metadata"]["name"]
    try:
        batch.create_namespaced_job(options.namespace, manifest)
    except client.ApiException as exc:
        if exc.status != 409:  # 409: an earlier delivery created it; wait for that one
            raise DistributedJobFailed(f"cannot create Job {name}: {exc.reason}") from exc
    checkpoints = CheckpointStore(store)
    seen = 0
    try:
        while True:
            status = batch.read_namespaced_job_status(name, options.namespace).status
            seen = _relay_pointer(checkpoints, event, seen, on_epoch)
            if status.succeeded and status.succeeded >= event.data.recipe.workers:
                break
            if status.failed and any(c.type == "Failed" and c.status == "True" for c in status.conditions or []):
                raise DistributedJobFailed(f"Job {name} failed: {status.conditions[-1].message}")
            time.sleep(_POLL_S)
    except BaseException:
        # Cancelled, or the Job failed: nothing may go on training without an owner.
        batch.delete_namespaced_job(name, options.namespace, propagation_policy="Background")
        raise
    return final_model(event, ds, store, policy, time.perf_counter() - started)


def _relay_pointer(store: CheckpointStore, event: TrainingRequested, seen: int, on_epoch: ProgressFn | None) -> int:
    """A progress report for each checkpoint rank 0 wrote since the last look (loss and metrics ride in it)."""
    pointer = store.pointer(event.tenant, event.id)
    if pointer is None or int(pointer.get("epoch", 0)) <= seen:
        return seen
    meta = pointer.get("meta") or {}
    if on_epoch and "loss" in meta:
        epochs = event.data.recipe.epochs
        on_epoch(
            int(pointer["epoch"]),
            epochs,
            meta["loss"],
            meta["metrics"],
            workers=event.data.recipe.workers,
            val_loss=meta.get("val_loss"),
        )
    return int(pointer["epoch"])
