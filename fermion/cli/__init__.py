"""The `fermion` command line: one module per command group, and one error boundary (`main`)."""

from __future__ import annotations

import typer

from fermion.client import FermionError
from fermion.infra import ServerError
from fermion.model_store import RegistryError

from .console import fail
from .jobs import jobs_app
from .keys import keys_app
from .models import models_app
from .pipelines import pipelines_app
from .runs import runs_app
from .stack import demo, up
from .work import predict, sweep, train, upload

app = typer.Typer(
    help="Fermion: event-driven, serverless ML. Train on events, serve ONNX over HTTP.",
    no_args_is_help=True,
    add_completion=False,
)
for command in (up, demo, upload, train, sweep, predict):
    app.command()(command)
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")

# What a user can cause (a bad file, an unreachable stack, a refused request): one line, exit 1, no traceback.
USER_ERRORS = (FermionError, RegistryError, ServerError)


def main() -> None:
    """Entry point of the `fermion` script."""
    try:
        app()
    except USER_ERRORS as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None


__all__ = ["app", "main"]
