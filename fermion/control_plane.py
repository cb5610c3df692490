"""The client's methods for the control routes: run history, canaries and shadows, federations,
pipeline rules, drift windows and labels.

`Client` (client.py) inherits them; they make their requests through its `_call`, so they share its
connection, key, tenant, error translation and write retries.
"""

from __future__ import annotations

from typing import Any

from . import retry as retries


class ControlPlane:
    """Runs, canaries and federations over the ingest function's HTTP API."""

    ingest_url: str

    @property
    def _tenant(self) -> dict[str, str]:
        raise NotImplementedError  # Client's

    def _call(self, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # Client's

    # ---- run history
    def runs(self, model: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The tenant's training runs, newest first, without their per-epoch curves."""
        params: dict[str, Any] = {"limit": limit, **self._tenant, **({"model": model} if model else {})}
        return list(self._call("GET", f"{self.ingest_url}/v1/runs", params=params))

    def run(self, job: str) -> dict[str, Any]:
        """One run: parameters, dataset, every epoch, final metrics, version and lineage (or its error)."""
        return dict(self._call("GET", f"{self.ingest_url}/v1/runs/{job}", params=self._tenant))

    def compare_runs(self, jobs: list[str]) -> dict[str, Any]:
        """Runs side by side, and the parameters that differ between them."""
        params: dict[str, Any] = {"job": jobs, **self._tenant}
        return dict(self._call("GET", f"{self.ingest_url}/v1/runs/compare", params=params))

    def sweep_record(self, sweep_id: str, model: str | None = None) -> dict[str, Any]:
        """A sweep's study: its trials and, once it is done, its winner and gate decision."""
        params = {**self._tenant, **({"model": model} if model else {})}
        return dict(self._call("GET", f"{self.ingest_url}/v1/sweeps/{sweep_id}", params=params))

    # ---- serving per version
    def serving(
        self, model: str, *, window_s: int = 3600, step_s: int | None = None, version: int | None = None
    ) -> dict[str, Any]:
        """Request rate, p50/p99 latency, error ratio and online accuracy per version over the last `window_s`."""
        params: dict[str, Any] = {**self._tenant, "window": window_s}
        if step_s is not None:
            params["step"] = step_s
        if version is not None:
            params["version"] = version
        return dict(self._call("GET", f"{self.ingest_url}/v1/models/{model}/serving", params=params))

    # ---- a version's files
    def model_file(self, model: str, version: int, filename: str = "model.onnx") -> bytes:
        """One file of a version, as the registry verified it against the signed manifest."""
        url = f"{self.ingest_url}/v1/models/{model}/versions/{version}/files/{filename}"
        return bytes(self._call("GET", url, params=self._tenant))

    # ---- canaries and shadows
    def start_canary(
        self,
        model: str,
        version: int,
        *,
        alias: str = "production",
        steps: list[int] | None = None,
        bake_s: float = 300.0,
        automatic: bool = True,
        bounds: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send the first step's share of `alias`'s traffic to `version`; the alias's record after the move."""
        body: dict[str, Any] = {"version": version, "bake_s": bake_s, "automatic": automatic}
        if steps is not None:
            body["steps"] = steps
        if bounds:
            body["bounds"] = bounds
        return self._canary("POST", model, alias, "canary", json=body)

    def step_canary(self, model: str, *, alias: str = "production", to: int | None = None) -> dict[str, Any]:
        """Move the canary to its next step (or to `to` percent; 100 finishes it, 0 ends it)."""
        return self._canary("POST", model, alias, "canary/step", json={"to": to})

    def finish_canary(self, model: str, *, alias: str = "production") -> dict[str, Any]:
        """Send all of the alias's traffic to the canary."""
        return self._canary("POST", model, alias, "canary/finish")

    def abort_canary(self, model: str, *, alias: str = "production") -> dict[str, Any]:
        """Send all of the alias's traffic back to the incumbent."""
        return self._canary("POST", model, alias, "canary/abort")

    def canary(self, model: str, *, alias: str = "production") -> dict[str, Any]:
        """The alias's record: its split, rollout plan, shadow and recent moves."""
        return self._canary("GET", model, alias, "canary")

    def set_shadow(self, model: str, version: int | None, *, alias: str = "production") -> dict[str, Any]:
        """Mirror the alias's traffic to `version` (None: stop mirroring)."""
        return self._canary("PUT", model, alias, "shadow", json={"version": version})

    def _canary(self, method: str, model: str, alias: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.ingest_url}/v1/models/{model}/aliases/{alias}/{path}"
        return dict(self._call(method, url, params=self._tenant, **kwargs))

    # ---- federations
    def start_federation(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a federation (a FederationSpec whose `holdout` names an uploaded dataset); its id and rounds."""
        body = {**spec, **self._tenant}
        key = idempotency_key or retries.new_key()
        return dict(self._call("POST", f"{self.ingest_url}/v1/federations", key=key, json=body))

    def federation_rounds(self, federation_id: str) -> list[dict[str, Any]]:
        """Each closed round of a federation: its version, held-out metrics, examples and participants."""
        url = f"{self.ingest_url}/v1/federations/{federation_id}/rounds"
        return list(self._call("GET", url, params=self._tenant))

    # ---- pipelines
    def pipelines(self) -> list[dict[str, Any]]:
        """The pipeline rules."""
        return list(self._call("GET", f"{self.ingest_url}/v1/pipelines", params=self._tenant))

    def put_pipeline(self, name: str, rule: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a pipeline rule."""
        return dict(self._call("PUT", f"{self.ingest_url}/v1/pipelines/{name}", json=rule, params=self._tenant))

    def delete_pipeline(self, name: str) -> None:
        """Remove a pipeline rule."""
        self._call("DELETE", f"{self.ingest_url}/v1/pipelines/{name}", params=self._tenant)

    # ---- drift and labels (the monitor's inputs and outputs)
    def drift(self, model: str, *, version: int | None = None, limit: int = 20) -> dict[str, Any]:
        """The model's recent drift windows (PSI, KS p-value, the decision per feature) and its last alarm."""
        params: dict[str, Any] = {"limit": limit, **self._tenant, **({"version": version} if version else {})}
        return dict(self._call("GET", f"{self.ingest_url}/v1/models/{model}/drift", params=params))

    def submit_labels(self, model: str, labels: dict[str, str]) -> dict[str, Any]:
        """True labels of past predictions, by the request id they were answered under (online accuracy)."""
        body = {"labels": [{"request_id": r, "label": label} for r, label in labels.items()]}
        url = f"{self.ingest_url}/v1/models/{model}/labels"
        return dict(self._call("POST", url, json=body, params=self._tenant))
