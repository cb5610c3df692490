"""The CLI's one console, the one way a command refuses to go on, and the one way it prints data.

Every command that prints data takes `-o/--output table|json|yaml` (default `table`); `json` and
`yaml` print the data exactly as the HTTP API answered it, for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table (for people), json or yaml (for scripts)")]


def fail(message: str) -> typer.Exit:
    """Print `message` literally (server text may hold brackets) and return the exit to raise."""
    errors.print("error: ", style="bold red", end="")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)  # one line, however long
    return typer.Exit(1)


def say(message: str) -> None:
    """A line for people, printed literally (names and server text may hold brackets)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A remark about what was done with the input (a name normalised, a column ignored), on stderr:
    stdout stays the data alone, for scripts."""
    errors.print(f"note: {message}", markup=False, highlight=False, soft_wrap=True)


def show(table: Table) -> None:
    """A table at the terminal's width (long ids fold), or piped, as wide as its rows: ids whole on one line."""
    # Console.print(width=) only narrows, so a wide console of its own prints the piped table.
    (console if console.is_terminal else Console(width=100_000)).print(table)


def emit(
    data: Any, output: Output, columns: Sequence[str] = (), row: Callable[[Any], Sequence[Any]] | None = None
) -> None:
    """`data` as json or yaml, or (a list) as a table of `columns` with `row(item)`, or a dict as pairs."""
    if output is Output.json:
        print(json.dumps(data, indent=2, default=str))
    elif output is Output.yaml:
        import yaml

        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False), end="")
    elif row is not None:
        table = Table()
        for c in columns:
            table.add_column(c, overflow="fold")  # ids are never cut with an ellipsis: they fold
        for item in data:
            table.add_row(*(str(c) for c in row(item)), style=None)
        show(table)
    else:
        console.print_json(json.dumps(data, default=str))
