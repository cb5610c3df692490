"""The CLI's one console, and the one way a command refuses to go on."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print `message` literally (server text may hold brackets) and return the exit to raise."""
    errors.print("error: ", style="bold red", end="")
    errors.print(message, markup=False, highlight=False)
    return typer.Exit(1)
