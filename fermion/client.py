"""The Python client: every call is an HTTP request to the ingest or inference function.

>>> client = Client.from_settings()           # FERMION_URL + FERMION_API_KEY, or the local stack
>>> ds = client.upload("iris.csv")            # dataset "iris"
>>> job = client.train("iris", ds["name"])    # label column: `label`, `target`, else the last one
>>> result = client.wait(job)                 # or: for event in client.follow(job): ...
>>> logits = client.predict("iris", x)        # Open Inference Protocol v2
>>> client.predict_rows("churn", [{"age": 31, "plan": "pro"}])   # {"predictions": ["stay"], "probabilities": ...}
>>> client.predict_pictures("digits", [Path("seven.png")])   # [{"name": "seven.png", "label": "7", ...}]

Writes carry an Idempotency-Key, one per logical operation, and are retried with it on 502/503/504
and transport errors (`fermion/retry.py`): a retry returns the same job, never a second one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from fermion.events import (
    Event,
    ScoringCompleted,
    ScoringFailed,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    parse_event,
)
from fermion.infra import StackSettings
from fermion.service.jobs import DeadLetter, JobStatus

from . import retry as retries
from .control_plane import ControlPlane
from .data_plane import DataPlane
from .errors import FermionError, JobFailed
from .serving import Serving
from .settings import ClientSettings

if TYPE_CHECKING:
    from fermion.infra.identity import LocalIdentity


class Client(ControlPlane, Serving, DataPlane):
    """Talks to the ingest and inference functions over HTTP (https or http) with an API key."""

    def __init__(
        self,
        ingest_url: str,
        inference_url: str,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout_s: float = 60.0,
        retry: retries.Retry | None = None,
    ) -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.inference_url = inference_url.rstrip("/")
        self.tenant = tenant  # None: the key's own tenant (naming another needs an admin key)
        self.write_retry = retry or retries.Retry()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: StackSettings | None = None, client: ClientSettings | None = None) -> Client:
        """FERMION_URL (or FERMION_INGEST_URL/FERMION_INFERENCE_URL) and FERMION_API_KEY; else the local stack."""
        c = client or ClientSettings()
        s = settings or StackSettings()
        ingest = c.ingest_url or c.url or s.ingest_url
        inference = c.inference_url or c.url or s.inference_url
        key = c.api_key or s.api_key
        api_key = key.get_secret_value() if key else _local_identity(s).admin_key()
        return cls(ingest, inference, api_key=api_key, timeout_s=c.timeout_s)

    @property
    def _tenant(self) -> dict[str, str]:
        return {"tenant": self.tenant} if self.tenant else {}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, url: str, *, key: str | None = None, raw: bool = False, **kwargs: Any) -> Any:
        """One request; with an idempotency `key`, a write retried with that key until it is settled.

        Its JSON answer, or with `raw` the response itself (a file's bytes)."""
        try:
            if key is None:
                response = self._http.request(method, url, **kwargs)
            else:
                response = retries.send(self._http, method, url, key=key, retry=self.write_retry, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(method, url, exc) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise FermionError(f"{method} {url} → {response.status_code}: {detail}")
        if raw:
            return response
        if response.headers.get("content-type", "").startswith("application/octet-stream"):
            return response.content  # a version's file
        return response.json() if response.content else None

    def _unreachable(self, method: str, url: str, exc: httpx.HTTPError) -> FermionError:
        """The one translation of a failed connection: nothing listening is said as such, with the fix."""
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            base = next((b for b in (self.ingest_url, self.inference_url) if url.startswith(b)), url)
            return FermionError(f"no Fermion stack answers at {base} — start one with `fermion up` or set FERMION_URL")
        return FermionError(f"{method} {url} failed: {exc or type(exc).__name__}")

    # ---- keys
    def create_key(
        self, tenant: str, scopes: list[str], *, name: str = "", expires_in_s: float | None = None
    ) -> dict[str, Any]:
        """A new API key (admin only); the answer's `key` is shown this once."""
        body = {"tenant": tenant, "scopes": scopes, "name": name, "expires_in_s": expires_in_s}
        return dict(self._call("POST", f"{self.ingest_url}/v1/keys", json=body))

    def keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every API key (of a tenant), masked (admin only)."""
        return list(self._call("GET", f"{self.ingest_url}/v1/keys", params={"tenant": tenant} if tenant else {}))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a key by id (admin only)."""
        return dict(self._call("DELETE", f"{self.ingest_url}/v1/keys/{key_id}"))

    # ---- data and training
    def train(self, model_name: str, dataset: str, *, sha256: str | None = None, **recipe: Any) -> str:
        """Request a training; returns the job id. Recipe fields left out (or None) take the server's default."""
        return str(self.request_training(model_name, dataset, sha256=sha256, **recipe)["job_id"])

    def request_training(
        self,
        model_name: str,
        dataset: str,
        *,
        sha256: str | None = None,
        idempotency_key: str | None = None,
        **recipe: Any,
    ) -> dict[str, Any]:
        """Request a training; the whole answer (job id, dataset, label column); one job however often retried."""
        body = {
            "model_name": model_name,
            **self._tenant,
            "recipe": {k: v for k, v in recipe.items() if v is not None},
            "dataset": {"name": dataset, **({"sha256": sha256} if sha256 else {})},
        }
        key = idempotency_key or retries.new_key()
        return dict(self._call("POST", f"{self.ingest_url}/v1/trainings", key=key, json=body))

    def sweep(
        self,
        model_name: str,
        dataset: str,
        trials: list[dict[str, Any]],
        *,
        metric: str = "macro_f1",
        gate: dict[str, Any] | None = None,
        sha256: str | None = None,
        idempotency_key: str | None = None,
        **search: Any,
    ) -> dict[str, Any]:
        """Request a sweep; returns the sweep id and its trials' job ids.

        `search` takes SweepRequest's fields: search ("grid", "random", "tpe"), n_trials, space
        ({field: {"kind": ..., "low": ..., "high": ...} or {"kind": "choice", "choices": [...]}}),
        base (a recipe), parallel, prune.
        """
        body = {
            "model_name": model_name,
            **self._tenant,
            "trials": [{k: v for k, v in t.items() if v is not None} for t in trials],
            "metric": metric,
            "gate": gate,
            "dataset": {"name": dataset, **({"sha256": sha256} if sha256 else {})},
            **{k: v for k, v in search.items() if v is not None},
        }
        key = idempotency_key or retries.new_key()
        return dict(self._call("POST", f"{self.ingest_url}/v1/sweeps", key=key, json=body))

    def architectures(self) -> list[dict[str, str]]:
        """Every architecture a training may name (built-ins and installed recipes)."""
        return list(self._call("GET", f"{self.ingest_url}/v1/architectures"))

    # ---- jobs
    def jobs(self, limit: int = 1000) -> dict[str, JobStatus]:
        """Jobs the event log knows (the newest `limit`), with where they stand."""
        rows = self._call("GET", f"{self.ingest_url}/v1/jobs", params={"limit": limit, **self._tenant})
        return {r["job_id"]: _job(r) for r in rows}

    def job(self, job: str) -> JobStatus:
        """One job by its id or a unique prefix of it."""
        return _job(self._call("GET", f"{self.ingest_url}/v1/jobs/{job}", params=self._tenant))

    def follow(self, job: str, *, timeout_s: float = 600.0) -> Iterator[Event]:
        """The job's events as they happen (long-polls), ending with its completed or failed event."""
        deadline = time.monotonic() + timeout_s
        after = 0
        while time.monotonic() < deadline:
            wait = max(0.0, min(20.0, deadline - time.monotonic()))
            out = self._call(
                "GET",
                f"{self.ingest_url}/v1/jobs/{job}/events",
                params={"after": after, "wait_s": wait, **self._tenant},
                timeout=wait + 30,
            )
            for item in out["events"]:
                event = parse_event(json.dumps(item["event"]).encode())
                yield event
                if isinstance(event, TrainingCompleted | TrainingFailed | ScoringCompleted | ScoringFailed):
                    return
            after = out["next"]
            if out["ended"] and not out["events"]:
                return
        raise FermionError(f"job {job} did not finish within {timeout_s:.0f}s")

    def wait(
        self, job: str, *, on_progress: Callable[[TrainingProgress], None] | None = None, timeout_s: float = 600.0
    ) -> TrainingCompleted:
        """Block until the job ends; raise JobFailed with the reason if it failed or was cancelled."""
        for event in self.follow(job, timeout_s=timeout_s):
            if isinstance(event, TrainingProgress) and on_progress:
                on_progress(event)
            elif isinstance(event, TrainingFailed):
                state = "was cancelled" if event.data.error == "JobCancelled" else "failed"
                raise JobFailed(f"job {event.data.job_id} {state}: {event.data.reason}")
            elif isinstance(event, TrainingCompleted):
                return event
        raise FermionError(f"job {job}: its events ended without an outcome")

    def cancel(self, job: str) -> dict[str, Any]:
        """Ask a job to stop (before it starts, or after its current epoch)."""
        return dict(self._call("POST", f"{self.ingest_url}/v1/jobs/{job}/cancel", params=self._tenant))

    def dead_letters(self) -> list[DeadLetter]:
        """The dead-lettered job messages, with their reasons."""
        rows = self._call("GET", f"{self.ingest_url}/v1/dlq", params=self._tenant)
        return [DeadLetter(**r, data=b"") for r in rows]

    def retry(self, job: str) -> dict[str, Any]:
        """Publish a dead-lettered job's original event again (same job id, a fresh delivery)."""
        return dict(self._call("POST", f"{self.ingest_url}/v1/dlq/{job}/retry", params=self._tenant))

    # ---- registry
    def models(self) -> list[dict[str, Any]]:
        """Every model with its versions and aliases."""
        return list(self._call("GET", f"{self.ingest_url}/v1/models", params=self._tenant))

    def versions(self, model: str) -> dict[str, Any]:
        """A model's versions with their metrics, and its aliases."""
        return dict(self._call("GET", f"{self.ingest_url}/v1/models/{model}", params=self._tenant))

    def manifest(self, model: str, version: int) -> dict[str, Any]:
        """A version's manifest."""
        return dict(self._call("GET", f"{self.ingest_url}/v1/models/{model}/versions/{version}", params=self._tenant))

    def push(self, model: str, path: str | Path, *, labels: list[str] | None = None, **form: Any) -> dict[str, Any]:
        """Upload an ONNX file (and the external data files beside it that it names) as the next version.

        `form`: `metrics` (the version's) and `origin` (where the graph came from: its lineage), sent as JSON.
        """
        p = Path(path)
        extra = [q for q in p.parent.iterdir() if q.is_file() and q != p and q.suffix in (".data", ".bin", ".weights")]
        with p.open("rb") as f:
            files: list[tuple[str, Any]] = [("model", (p.name, f))]
            files += [("data", (q.name, q.read_bytes())) for q in extra]
            data = {**self._tenant, "labels": ",".join(labels or [])}
            data |= {k: json.dumps(v) for k, v in form.items() if k in ("metrics", "origin") and v}
            return dict(self._call("POST", f"{self.ingest_url}/v1/models/{model}/versions", files=files, data=data))

    def promote(
        self,
        model: str,
        version: int,
        *,
        alias: str = "production",
        expected_version: int | None = None,
        abort_rollout: bool = False,
    ) -> dict[str, Any]:
        """Point `alias` at `version` (if it is still at `expected_version`); under a rollout: 409 unless aborted."""
        body: dict[str, Any] = {"version": version}
        if expected_version is not None:
            body["expected_version"] = expected_version
        if abort_rollout:
            body["abort_rollout"] = True
        return dict(
            self._call("PUT", f"{self.ingest_url}/v1/models/{model}/aliases/{alias}", json=body, params=self._tenant)
        )

    def rollback(self, model: str, *, alias: str = "production", abort_rollout: bool = False) -> dict[str, Any]:
        """Point `alias` back at the version it held before its last move (a running rollout: 409 unless aborted)."""
        url = f"{self.ingest_url}/v1/models/{model}/aliases/{alias}/rollback"
        params = {**self._tenant, **({"abort_rollout": "true"} if abort_rollout else {})}
        return dict(self._call("POST", url, params=params))

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove an alias."""
        self._call("DELETE", f"{self.ingest_url}/v1/models/{model}/aliases/{alias}", params=self._tenant)

    # ---- edge bundles
    def export_edge(self, model: str, *, timeout_s: float = 1200.0, **options: Any) -> bytes:
        """A version's signed edge bundle (a tar archive), built by the platform.

        `options`: version or alias, prune, quantize, format, accuracy_budget, max_bytes, finetune_epochs.
        """
        url = f"{self.ingest_url}/v1/models/{model}/edge"
        try:
            response = self._http.post(url, json=options, params=self._tenant, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise self._unreachable("POST", url, exc) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise FermionError(f"POST {url} → {response.status_code}: {detail}")
        return response.content


def _job(row: dict[str, Any]) -> JobStatus:
    return JobStatus(**{k: v for k, v in row.items() if k != "updated"})


def _local_identity(settings: StackSettings) -> LocalIdentity:
    """This machine's stack identity: it comes with the `local` extra (the bus and the store), which a
    client of a remote deployment never needs, so it is imported only when no API key is set."""
    try:
        from fermion.infra.identity import LocalIdentity
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("fermion"):
            raise
        raise FermionError(
            "FERMION_API_KEY is not set: set FERMION_URL and FERMION_API_KEY for a remote deployment, "
            f"or pip install 'fermion[local]' for this machine's stack ({exc.name} is not installed)"
        ) from None
    return LocalIdentity(settings.home)
