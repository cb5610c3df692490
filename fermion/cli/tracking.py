"""MLflow both ways: a Fermion run into an MLflow tracking server, and an MLflow model into the registry.

Out (`fermion runs export --mlflow URI`): the run record's parameters, its per-epoch loss and metrics
(MLflow steps are epochs), its final metrics, and the registered version's graph as an ONNX-flavour
model, under the experiment `fermion/MODEL` and a run named by the job id (tags say which version).

In (`fermion models import NAME SOURCE`): SOURCE is `mlflow:` and an MLflow model URI
(`mlflow:runs:/RUN/model`, `mlflow:models:/NAME/VERSION`) read from the tracking server, or a local
MLflow model directory. An ONNX flavour is pushed as it is; a scikit-learn flavour only when MLflow
saved it with skops (read with trusted types only, compile/pipeline_file.py), never a pickle. The
MLflow run's metrics become the version's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from fermion.client import Client, FermionError

EXPERIMENT_PREFIX = "fermion/"
MAX_PARAM = 6000  # MLflow's limit on one parameter value


def _mlflow() -> Any:
    import mlflow  # the `mlflow` extra: main() names it when it is missing
    import mlflow.artifacts
    import mlflow.exceptions
    import mlflow.onnx

    return mlflow


def _params(parameters: dict[str, Any]) -> dict[str, str]:
    """Flat text parameters as MLflow keeps them; nested values as JSON."""
    out = {}
    for k, v in parameters.items():
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        out[k] = text[:MAX_PARAM]
    return out


def export_run(
    client: Client, tracking_uri: str, *, job: str | None = None, model: str | None = None
) -> dict[str, Any]:
    """Log one Fermion run (by job id, or the newest version of `model`) into MLflow; returns where it went."""
    mlflow = _mlflow()
    try:
        return _export(mlflow, client, tracking_uri, job, model)
    except mlflow.exceptions.MlflowException as exc:  # MLflow's errors stop here, as one line
        raise FermionError(f"MLflow at {tracking_uri}: {exc.message}") from exc


def _export(mlflow: Any, client: Client, tracking_uri: str, job: str | None, model: str | None) -> dict[str, Any]:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    run, manifest = _find(client, job, model)
    name = str(manifest["name"] if manifest else (run or {})["model_name"])
    tracker = MlflowClient(tracking_uri=tracking_uri)
    experiment = tracker.get_experiment_by_name(EXPERIMENT_PREFIX + name)
    experiment_id = experiment.experiment_id if experiment else tracker.create_experiment(EXPERIMENT_PREFIX + name)
    tags = {"fermion.model": name}
    if manifest:
        tags |= {"fermion.version": str(manifest["version"]), "fermion.content_sha256": manifest["content_sha256"]}
    if run:
        tags["fermion.job_id"] = run["job_id"]
    created = tracker.create_run(
        experiment_id, run_name=(run or {}).get("job_id") or f"{name}-v{(manifest or {})['version']}", tags=tags
    )
    run_id = created.info.run_id
    parameters = run["parameters"] if run else (manifest or {}).get("lineage", {}).get("recipe", {})
    metrics = _curves(run, manifest)
    tracker.log_batch(run_id, params=[Param(k, v) for k, v in _params(parameters).items()], metrics=[])
    for start in range(0, len(metrics), 900):  # MLflow takes at most 1,000 metrics a batch
        batch = [Metric(k, v, ts, step) for k, v, ts, step in metrics[start : start + 900]]
        tracker.log_batch(run_id, metrics=batch)
    model_uri = _log_graph(mlflow, client, tracking_uri, experiment_id, run_id, manifest) if manifest else None
    status = "FINISHED" if not run or run["status"] == "completed" else "FAILED"
    tracker.set_terminated(run_id, status=status)
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "model_uri": model_uri,
        "metrics": len(metrics),
        "params": len(parameters),
    }


def _find(client: Client, job: str | None, model: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The run record and the version's manifest to export (either may be missing: a pushed version has no run)."""
    if (job is None) == (model is None):
        raise FermionError("give --run JOB or --model NAME[:VERSION], one of them")
    if job is not None:
        run = client.run(job)
        version = run.get("version")
        return run, client.manifest(run["model_name"], int(version)) if version else None
    assert model is not None
    name, _, number = model.partition(":")
    version = int(number) if number else max(v["version"] for v in client.versions(name)["versions"])
    manifest = client.manifest(name, version)
    event = manifest["lineage"].get("training_event_id")
    try:
        return (client.run(event) if event else None), manifest
    except FermionError:  # a version older than run records: its manifest's metrics still go
        return None, manifest


def _curves(run: dict[str, Any] | None, manifest: dict[str, Any] | None) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) for every epoch's loss and metrics, then the final metrics."""
    out: list[tuple[str, float, int, int]] = []
    epochs = (run or {}).get("epochs", [])
    stamp = _millis((run or {}).get("started"))  # each epoch at the run's start plus the seconds so far
    for e in epochs:
        stamp += int((e.get("seconds") or 0) * 1000)
        if e.get("loss") is not None:
            out.append(("loss", float(e["loss"]), stamp, int(e["epoch"])))
        out += [(k, float(v), stamp, int(e["epoch"])) for k, v in e.get("metrics", {}).items()]
    final = (run or {}).get("metrics") or (manifest or {}).get("metrics") or {}
    last = int(epochs[-1]["epoch"]) if epochs else 0
    logged = {(k, s) for k, _, _, s in out}
    out += [(k, float(v), stamp, last) for k, v in final.items() if (k, last) not in logged]
    return out


def _millis(at: Any) -> int:
    from datetime import datetime

    if not at:
        return 0
    return int(datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp() * 1000)


def _log_graph(
    mlflow: Any, client: Client, tracking_uri: str, experiment_id: str, run_id: str, manifest: dict[str, Any]
) -> str:
    """The version's model.onnx as the run's ONNX-flavour model, `model`; returns its `models:/` URI."""
    import onnx

    graph = onnx.load_from_string(client.model_file(manifest["name"], manifest["version"]))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)  # the logged model lives beside its run
    with mlflow.start_run(run_id=run_id):
        return str(mlflow.onnx.log_model(graph, name="model", save_as_external_data=False).model_uri)


def import_model(
    client: Client,
    name: str,
    source: str,
    *,
    tracking_uri: str | None = None,
    sample: Path | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Register the MLflow model at `source` as the next version of `name`, with its run's metrics."""
    errors = (_mlflow().exceptions.MlflowException,) if source.startswith("mlflow:") else ()
    try:
        return _import(client, name, source, tracking_uri, sample, labels)
    except errors as exc:  # MLflow's errors stop here, as one line
        raise FermionError(f"MLflow: {exc.message}") from exc


def _import(
    client: Client, name: str, source: str, tracking_uri: str | None, sample: Path | None, labels: list[str] | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fermion-mlflow-") as tmp:
        if source.startswith("mlflow:"):
            uri = source.removeprefix("mlflow:")
            if tracking_uri:  # MLflow 3.17 finds a run's logged model (runs:/RUN/NAME) on the global URI only
                _mlflow().set_tracking_uri(tracking_uri)
            folder = Path(
                _mlflow().artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri)
            )
        else:
            folder = Path(source)
        spec = _spec(folder, source)
        run_id = spec.get("run_id")
        metrics = _run_metrics(run_id, tracking_uri) if run_id and source.startswith("mlflow:") else {}
        origin = {"source": "mlflow", "uri": source, **({"run_id": run_id} if run_id else {})}
        flavors = spec.get("flavors", {})
        if "onnx" in flavors:
            path = folder / flavors["onnx"]["data"]
            out = client.push(name, path, labels=labels, metrics=metrics, origin={**origin, "flavor": "onnx"})
            return {**out, "flavor": "onnx", "metrics": metrics}
        if "sklearn" in flavors:
            return _import_sklearn(client, name, folder, flavors["sklearn"], sample, metrics, origin)
    raise FermionError(f"{source}: an MLflow model of flavours {sorted(flavors)}; import takes onnx or sklearn")


def _spec(folder: Path, source: str) -> dict[str, Any]:
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise FermionError(f"{source} is not an MLflow model (no MLmodel file)")
    return dict(yaml.safe_load(mlmodel.read_text()) or {})


def _run_metrics(run_id: str, tracking_uri: str | None) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    return {k: float(v) for k, v in MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.metrics.items()}


def _import_sklearn(
    client: Client,
    name: str,
    folder: Path,
    flavor: dict[str, Any],
    sample: Path | None,
    metrics: dict[str, float],
    origin: dict[str, Any],
) -> dict[str, Any]:
    """A scikit-learn flavour saved with skops: loaded with trusted types, converted, checked, pushed."""
    from fermion.compile.pipeline_file import UntrustedFile, load_pipeline

    from .convert import push_converted

    form = flavor.get("serialization_format", "cloudpickle")
    if form != "skops":
        raise FermionError(
            f"the scikit-learn model is saved as {form}, which runs code when loaded; "
            "log it with mlflow.sklearn.log_model(..., serialization_format='skops') and import that"
        )
    try:
        estimator = load_pipeline(folder / flavor["pickled_model"], boosters=True)
    except UntrustedFile as exc:
        raise FermionError(str(exc)) from exc
    out, done = push_converted(client, name, estimator, sample, {**origin, "flavor": "sklearn"}, metrics=metrics)
    return {**out, "flavor": "sklearn", "metrics": metrics, "parity": done.parity, "parity_rows": done.rows}
