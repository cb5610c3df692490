"""The Python client: upload datasets, request trainings, follow jobs, call inference.

>>> client = Client.from_settings()
>>> ds = client.upload("digits.npz")
>>> job = client.train("digits", ds["name"], architecture="cnn")
>>> result = client.wait(job)                 # or: async for event in client.follow(job): ...
>>> logits = client.predict("digits", x)      # Open Inference Protocol v2
>>> client.predict_pictures("digits", [Path("seven.png")])   # [{"name": "seven.png", "label": "7", ...}]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from fermion.events import (
    Bus,
    BusError,
    BusSettings,
    CancelRequest,
    Event,
    TrainingCancel,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    parse_event,
    subjects,
)
from fermion.infra import StackSettings
from fermion.infra.identity import LocalIdentity
from fermion.jobs import DeadLetter, JobStatus, dead_letters, job_statuses

from . import retry as retries


class FermionError(Exception):
    """A request to Fermion failed; the message is the server's explanation."""


class JobFailed(FermionError):
    """A training job ended with `training.failed`."""


class Client:
    """Talks to the ingest and inference functions over HTTP and follows jobs on NATS."""

    def __init__(
        self,
        ingest_url: str,
        inference_url: str,
        nats: str | BusSettings,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        timeout_s: float = 60.0,
        retry: retries.Retry | None = None,
    ) -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.inference_url = inference_url.rstrip("/")
        self.bus_settings = nats if isinstance(nats, BusSettings) else BusSettings(nats_url=nats)
        self.tenant = tenant  # None: the key's own tenant (naming another needs an admin key)
        self.write_retry = retry or retries.Retry()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: StackSettings | None = None) -> Client:
        """A client for the stack the settings describe, with FERMION_API_KEY or this machine's admin key."""
        s = settings or StackSettings()
        identity = LocalIdentity(s.home)
        env = BusSettings()  # FERMION_NATS_* where set; else the local stack's port and admin identity
        url = env.nats_url if "nats_url" in env.model_fields_set else s.nats_url
        bus = env.model_copy(update={"nats_url": url})
        if bus.nats_user is None and identity.nats_config.exists():
            bus = identity.bus_settings("admin", url)
        api_key = s.api_key.get_secret_value() if s.api_key else identity.admin_key()
        return cls(s.ingest_url, s.inference_url, bus, api_key=api_key)

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

    def _call(self, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Any:
        """One request; with an idempotency `key`, a write retried with that key until it is settled."""
        try:
            if key is None:
                response = self._http.request(method, url, **kwargs)
            else:
                response = retries.send(self._http, method, url, key=key, retry=self.write_retry, **kwargs)
        except httpx.HTTPError as exc:
            raise FermionError(f"{method} {url} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise FermionError(f"{method} {url} → {response.status_code}: {detail}")
        return response.json()

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

    def upload(
        self, path: str | Path, name: str | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Upload a dataset file (.npz with x/y, or .csv); returns its stored reference."""
        p = Path(path)
        key = idempotency_key or retries.new_key()
        with p.open("rb") as f:
            form = {**self._tenant, **({"name": name} if name else {})}
            return self._call(
                "POST",
                f"{self.ingest_url}/v1/datasets",
                key=key,
                rewind=lambda: f.seek(0),
                files={"file": (p.name, f)},
                data=form,
            )

    def train(
        self,
        model_name: str,
        dataset: str,
        *,
        sha256: str | None = None,
        idempotency_key: str | None = None,
        **recipe: Any,
    ) -> str:
        """Request a training; returns the job id (the same for every retry with one `idempotency_key`)."""
        body = {
            "model_name": model_name,
            **self._tenant,
            "recipe": recipe,
            "dataset": {"name": dataset, **({"sha256": sha256} if sha256 else {})},
        }
        key = idempotency_key or retries.new_key()
        return str(self._call("POST", f"{self.ingest_url}/v1/trainings", key=key, json=body)["job_id"])

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
    ) -> dict[str, Any]:
        """Request a sweep; returns the sweep id and its trials' job ids."""
        body = {
            "model_name": model_name,
            **self._tenant,
            "trials": trials,
            "metric": metric,
            "gate": gate,
            "dataset": {"name": dataset, **({"sha256": sha256} if sha256 else {})},
        }
        key = idempotency_key or retries.new_key()
        return self._call("POST", f"{self.ingest_url}/v1/sweeps", key=key, json=body)

    async def follow(self, job_id: str, *, since: datetime | None = None) -> AsyncGenerator[Event, None]:
        """The job's progress events, ending with its `training.completed` or `training.failed`."""
        bus = await Bus.from_settings(self.bus_settings, name="fermion-client")
        try:
            start = since or datetime.now(UTC) - timedelta(minutes=10)
            async with contextlib.aclosing(bus.watch("fermion.training.>", since=start)) as events:
                async for raw in events:
                    event = parse_event(raw)
                    if getattr(getattr(event, "data", None), "job_id", None) != job_id:
                        continue
                    yield event
                    if isinstance(event, TrainingCompleted | TrainingFailed):
                        return
        finally:
            await bus.close()

    def wait(
        self, job_id: str, *, on_progress: Callable[[TrainingProgress], None] | None = None, timeout_s: float = 600.0
    ) -> TrainingCompleted:
        """Block until the job ends; raise JobFailed with the reason if it failed."""

        async def run() -> TrainingCompleted:
            async with contextlib.aclosing(self.follow(job_id)) as events:
                async for event in events:
                    if isinstance(event, TrainingProgress) and on_progress:
                        on_progress(event)
                    elif isinstance(event, TrainingFailed):
                        raise JobFailed(f"job {job_id} failed: {event.data.reason}")
                    elif isinstance(event, TrainingCompleted):
                        return event
            raise FermionError(f"job {job_id}: the event stream ended without an outcome")

        try:
            return asyncio.run(asyncio.wait_for(run(), timeout_s))
        except TimeoutError as exc:
            raise FermionError(f"job {job_id} did not finish within {timeout_s:.0f}s") from exc

    def promote(
        self, model: str, version: int, *, alias: str = "production", expected_version: int | None = None
    ) -> dict[str, Any]:
        """Point `alias` at `version` (only if it still points at `expected_version`, when given)."""
        body: dict[str, Any] = {"version": version}
        if expected_version is not None:
            body["expected_version"] = expected_version
        return self._call("PUT", f"{self.ingest_url}/v1/models/{model}/aliases/{alias}", json=body, params=self._tenant)

    def rollback(self, model: str, *, alias: str = "production") -> dict[str, Any]:
        """Point `alias` back at the version it held before its last move."""
        return self._call("POST", f"{self.ingest_url}/v1/models/{model}/aliases/{alias}/rollback", params=self._tenant)

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove an alias."""
        try:
            response = self._http.delete(f"{self.ingest_url}/v1/models/{model}/aliases/{alias}", params=self._tenant)
        except httpx.HTTPError as exc:
            raise FermionError(f"DELETE alias {alias} of {model} failed: {exc}") from exc
        if response.status_code >= 400:
            raise FermionError(
                f"DELETE alias {alias} of {model} → {response.status_code}: "
                f"{response.json().get('error', response.text)}"
            )

    def _with_bus(self, work: Callable[[Bus], Any]) -> Any:
        async def run() -> Any:
            bus = await Bus.from_settings(self.bus_settings, name="fermion-client")
            try:
                return await work(bus)
            finally:
                await bus.close()

        try:
            return asyncio.run(run())
        except BusError as exc:
            raise FermionError(str(exc)) from exc

    def jobs(self) -> dict[str, JobStatus]:
        """Every job the event log knows, with where it stands."""

        async def work(bus: Bus) -> dict[str, JobStatus]:
            return job_statuses(await bus.queued_jobs(), await bus.history("fermion.training.>"))

        return self._with_bus(work)

    def cancel(self, job_id: str, reason: str = "cancelled by request") -> None:
        """Ask for a job to stop (before it starts, or at its next epoch)."""
        event = TrainingCancel(tenant=self.tenant or "default", data=CancelRequest(job_id=job_id, reason=reason))
        self._with_bus(lambda bus: bus.publish(event))

    def dead_letters(self) -> list[DeadLetter]:
        """The dead-lettered job messages, with their reasons."""

        async def work(bus: Bus) -> list[DeadLetter]:
            return dead_letters(await bus.history(f"{subjects.DLQ_PREFIX}.training.>"))

        return self._with_bus(work)

    def retry(self, job_id: str) -> None:
        """Publish a dead-lettered job's original event again (same job id, a fresh delivery)."""
        letters = [d for d in self.dead_letters() if d.job_id == job_id]
        if not letters:
            raise FermionError(f"no dead-lettered job {job_id}")
        letter = letters[-1]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._with_bus(
            lambda bus: bus.publish_bytes(
                subjects.TRAINING_REQUESTED,
                letter.data,
                msg_id=f"{job_id}.retry.{stamp}",
                headers={"Fermion-Retry-Of": str(letter.seq)},
            )
        )

    def metadata(self, model: str) -> dict[str, Any]:
        """The model's Open Inference Protocol metadata (inputs, outputs, providers)."""
        return self._call("GET", f"{self.inference_url}/v2/models/{model}")

    def predict_pictures(
        self, model: str, pictures: list[Path], *, per_request: int = 64, max_request_bytes: int = 4 << 20
    ) -> list[dict[str, Any]]:
        """Send PNG/JPEG files to `:predict` (a few per request); each one's label and probabilities, in order."""
        results: list[dict[str, Any]] = []
        batch: list[Path] = []
        size = 0
        for path in [*pictures, None]:
            length = path.stat().st_size if path is not None else 0
            if batch and (path is None or len(batch) >= per_request or size + length > max_request_bytes):
                files = [("files", (p.name, p.read_bytes())) for p in batch]
                answer = self._call("POST", f"{self.inference_url}/v1/models/{model}:predict", files=files)
                results.extend(answer["predictions"])
                batch, size = [], 0
            if path is not None:
                batch.append(path)
                size += length
        return results

    def predict(self, model: str, x: np.ndarray, *, input_name: str = "input") -> np.ndarray:
        """Run `x` (rows of float32 features) through the served model; returns the first output."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        body = {
            "inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        out = self._call("POST", f"{self.inference_url}/v2/models/{model}/infer", json=body)["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
