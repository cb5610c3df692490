"""`fermion canary ...`: weighted aliases: start, step, finish, abort a canary; see it; mirror to a shadow.

Each command is one request to the ingest function's rollout routes (`/v1/models/{name}/aliases/
{alias}/canary...`, `.../shadow`), which move the alias by compare-and-swap; starting one is
announced there as `models.rollout.started` so the monitor judges the alias before traffic comes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from fermion.client import Client, FermionError

from .console import Output, OutputOption, console, emit, errors

canary_app = typer.Typer(help="Canary rollouts and shadow traffic on an alias.", no_args_is_help=True)
Model = Annotated[str, typer.Argument(help="model name")]
AliasOpt = Annotated[str, typer.Option(help="the alias whose traffic is split")]


def _client() -> Client:
    """The client of FERMION_URL (or the local stack); a command closes it when done."""
    return Client.from_settings()


@canary_app.command("start")
def canary_start(
    model: Model,
    version: Annotated[int, typer.Argument(help="the canary version")],
    alias: AliasOpt = "production",
    steps: Annotated[str, typer.Option(help="weight steps in percent, comma-separated")] = "10,50,100",
    bake: Annotated[float, typer.Option(help="seconds each step bakes before the next")] = 300.0,
    manual: Annotated[bool, typer.Option(help="step by hand: the controller neither steps nor rolls back")] = False,
    min_requests: Annotated[int, typer.Option(help="canary requests per step before it is judged")] = 50,
    output: OutputOption = Output.table,
) -> None:
    """Send the first step's share of the alias's traffic to VERSION."""
    try:
        weights = [int(s) for s in steps.split(",")]
    except ValueError as exc:
        raise FermionError(f"--steps must be comma-separated percentages, like 10,50,100; got {steps!r}") from exc
    with _client() as client:
        state = client.start_canary(
            model,
            version,
            alias=alias,
            steps=weights,
            bake_s=bake,
            automatic=not manual,
            bounds={"min_requests": min_requests},
        )
    if state.get("announced") is False:
        errors.print("warning: the rollout started but was not announced on NATS", markup=False)
    _answer(model, alias, state, output)


@canary_app.command("step")
def canary_step(
    model: Model,
    alias: AliasOpt = "production",
    to: Annotated[int | None, typer.Option(help="set the canary's weight to this percentage")] = None,
    output: OutputOption = Output.table,
) -> None:
    """Move the canary to its next step (or to --to percent; 100 finishes it, 0 ends it)."""
    with _client() as client:
        _answer(model, alias, client.step_canary(model, alias=alias, to=to), output)


@canary_app.command("finish")
def canary_finish(model: Model, alias: AliasOpt = "production", output: OutputOption = Output.table) -> None:
    """Send all of the alias's traffic to the canary (`fermion models rollback` undoes it)."""
    with _client() as client:
        _answer(model, alias, client.finish_canary(model, alias=alias), output)


@canary_app.command("abort")
def canary_abort(model: Model, alias: AliasOpt = "production", output: OutputOption = Output.table) -> None:
    """Send all of the alias's traffic back to the incumbent."""
    with _client() as client:
        _answer(model, alias, client.abort_canary(model, alias=alias), output)


@canary_app.command("status")
def canary_status(model: Model, alias: AliasOpt = "production", output: OutputOption = Output.table) -> None:
    """The alias's split, its rollout plan and its recent moves."""
    with _client() as client:
        state = client.canary(model, alias=alias)
    if output is not Output.table:
        emit(state, output)
        return
    _show(model, alias, state["record"], changes=True)
    if (progress := state.get("progress")) is not None:
        console.print(f"bake time left in this step: {progress['bake_left_s']:g}s")
    if (seen := state.get("analysis")) is not None:
        _analysis(seen)


@canary_app.command("shadow")
def canary_shadow(
    model: Model,
    version: Annotated[str, typer.Argument(help="the version to mirror traffic to, or 'off'")],
    alias: AliasOpt = "production",
    output: OutputOption = Output.table,
) -> None:
    """Mirror the alias's traffic to VERSION (answers compared, never returned); 'off' stops it."""
    if version != "off" and not version.isdigit():
        raise FermionError(f"give a version number or 'off'; got {version!r}")
    with _client() as client:
        state = client.set_shadow(model, None if version == "off" else int(version), alias=alias)
    _answer(model, alias, state, output)


def _answer(model: str, alias: str, state: dict[str, Any], output: Output) -> None:
    """A rollout route's answer: the alias's record for people, or the whole answer for scripts."""
    if output is Output.table:
        _show(model, alias, state["record"])
    else:
        emit(state, output)


def _split(weights: dict[str, int]) -> str:
    return ", ".join(f"v{v} {w}%" for v, w in sorted(weights.items(), key=lambda kv: int(kv[0])))


def _at(stamp: str) -> str:
    return f"{datetime.fromisoformat(stamp):%Y-%m-%d %H:%M:%S}"


def _show(model: str, alias: str, record: dict[str, Any], *, changes: bool = False) -> None:
    split = _split(record["weights"] or {str(record["version"]): 100})
    shadow = record.get("shadow")
    console.print(f"{model}@{alias}: {split}" + (f" (shadow v{shadow})" if shadow else ""))
    if (plan := record.get("rollout")) is not None:
        mode = "automatic" if plan["automatic"] else "manual"
        console.print(
            f"rollout of v{plan['canary']} over v{plan['incumbent']}: step {plan['step'] + 1} of {plan['steps']}, "
            f"bake {plan['bake_s']:g}s, {mode}, step began {_at(plan['step_started_at'])}"
        )
    if changes and record.get("changes"):
        table = Table("at", "split", "reason")
        for c in record["changes"][-10:]:
            table.add_row(_at(c["at"]), _split(c["weights"]), c["reason"])
        console.print(table)


def _analysis(seen: dict[str, Any]) -> None:
    """The controller's latest comparison of canary and incumbent, and its decision."""
    did = f", {seen['action'].replace('_', ' ')}" if seen.get("action") else ""
    console.print(f"controller at {_at(seen['at'])}: {seen['decision']}{did} ({seen['reason']})")
    table = Table("version", "role", "requests", "error ratio", "p99 ms", "labelled", "online accuracy")
    for role in ("canary", "incumbent"):
        t = seen[f"{role}_traffic"]
        accuracy = "-" if t["accuracy"] is None else f"{t['accuracy']:.4f}"
        table.add_row(
            f"v{t['version']}",
            role,
            str(t["requests"]),
            f"{t['error_ratio']:.4f}",
            f"{t['p99_ms']:.2f}",
            str(t["labelled"]),
            accuracy,
        )
    console.print(table)
