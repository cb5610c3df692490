"""The client's methods for stored datasets and batch scoring (issue 26).

`Client` (client.py) inherits them; they make their requests through its `_call` and `_http`, so
they share its connection, key, tenant, error translation and write retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from . import retry as retries


class DataPlane:
    """Datasets and their profiles, scoring jobs and their predictions, over the ingest function's API."""

    ingest_url: str
    _http: httpx.Client

    @property
    def _tenant(self) -> dict[str, str]:
        raise NotImplementedError  # Client's

    def _call(self, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # Client's

    def datasets(self) -> list[dict[str, Any]]:
        """The tenant's stored datasets, one entry per upload, with a table's rows, columns and label."""
        return list(self._call("GET", f"{self.ingest_url}/v1/datasets", params=self._tenant))

    def dataset(self, name: str, sha256: str | None = None) -> dict[str, Any]:
        """One stored dataset and its profile (`sha256` chooses when the name has several uploads)."""
        params = {**self._tenant, **({"sha256": sha256} if sha256 else {})}
        return dict(self._call("GET", f"{self.ingest_url}/v1/datasets/{name}", params=params))

    def score(
        self,
        model: str,
        dataset: str,
        *,
        id_column: str | None = None,
        format: str = "parquet",
        sha256: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue a batch scoring of a stored table with `model` (NAME, NAME@ALIAS, NAME:VERSION); the job."""
        body = {
            "model": model,
            **self._tenant,
            "dataset": {"name": dataset, **({"sha256": sha256} if sha256 else {})},
            "format": format,
            **({"id_column": id_column} if id_column else {}),
        }
        key = idempotency_key or retries.new_key()
        return dict(self._call("POST", f"{self.ingest_url}/v1/scorings", key=key, json=body))

    def fetch_output(self, job: str, dest: Path | None = None) -> Path:
        """Download a finished scoring job's predictions to `dest` (default: the file's own name here)."""
        response = self._call("GET", f"{self.ingest_url}/v1/jobs/{job}/output", params=self._tenant, raw=True)
        disposition = response.headers.get("content-disposition", "")
        filename = disposition.split("filename=")[-1].strip('"') if "filename=" in disposition else f"{job}.out"
        path = dest or Path(filename)
        path.write_bytes(response.content)
        return path

    def output_url(self, job: str) -> dict[str, Any]:
        """A presigned URL for a scoring job's predictions (where the store signs)."""
        return dict(self._call("GET", f"{self.ingest_url}/v1/jobs/{job}/output-url", params=self._tenant))
