"""`fermion deploy k8s` (being built: issue 24)."""

from __future__ import annotations

import typer

k8s_app = typer.Typer(help="Deploy to k8s.", no_args_is_help=True)
