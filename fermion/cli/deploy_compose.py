"""`fermion deploy compose up|down --dir DIR` (being built: issue 24)."""

from __future__ import annotations

import typer

compose_app = typer.Typer(help="The platform as local containers (docker compose).", no_args_is_help=True)
