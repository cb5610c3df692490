"""The client's methods for datasets (upload, profiles) and batch scoring (issue 26).

`Client` (client.py) inherits them; they make their requests through its `_call` and `_http`, so
they share its connection, key, tenant, error translation and write retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from . import presigned as presigned_upload
from . import retry as retries
from .errors import FermionError


class DataPlane:
    """Datasets and their profiles, scoring jobs and their predictions, over the ingest function's API."""

    ingest_url: str
    _http: httpx.Client

    @property
    def _tenant(self) -> dict[str, str]:
        raise NotImplementedError  # Client's

    def _call(self, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # Client's

    def upload(
        self,
        path: str | Path,
        name: str | None = None,
        *,
        idempotency_key: str | None = None,
        presigned: bool | None = None,
        label_column: str | None = None,
        task: str | None = None,
    ) -> dict[str, Any]:
        """Upload a dataset file (.npz with x/y, .csv with a header, .parquet, .zip/.tar of pictures); its stored
        reference, and a table's profile (`label_column` and `task` override the profile's guesses).

        `presigned`: PUT it to S3 through a URL ingest signs (fermion/presigned.py); None: only past
        DIRECT_LIMIT, and directly after all where the store cannot sign (a local directory: 409).
        """
        p = Path(path)
        if presigned or (presigned is None and p.stat().st_size > presigned_upload.DIRECT_LIMIT):
            try:
                return presigned_upload.upload(self._call, self.ingest_url, self._tenant, p, name)
            except (presigned_upload.PutRefused, httpx.HTTPError) as exc:
                raise FermionError(str(exc)) from exc
            except FermionError as exc:
                if presigned or "→ 409:" not in str(exc) or "presigned uploads need" not in str(exc):
                    raise
        key = idempotency_key or retries.new_key()
        with p.open("rb") as f:
            form = {**self._tenant, **({"name": name} if name else {})}
            form |= {k: v for k, v in (("label_column", label_column), ("task", task)) if v}
            return dict(
                self._call(
                    "POST",
                    f"{self.ingest_url}/v1/datasets",
                    key=key,
                    rewind=lambda: f.seek(0),
                    files={"file": (p.name, f)},
                    data=form,
                )
            )

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
