"""`fermion deploy aws` (being built: issue 24)."""

from __future__ import annotations

import typer

aws_app = typer.Typer(help="Deploy to aws.", no_args_is_help=True)
