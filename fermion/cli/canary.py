"""`fermion canary ...`: weighted aliases: start, step, finish, abort a canary; see it; mirror to a shadow.

Moves go straight to the registry by compare-and-swap (like `fermion models`); starting one is
announced as `models.rollout.started` so the monitor judges the alias even before traffic comes
(best effort: the move stands when NATS is away).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from fermion.client import FermionError, local_bus_settings
from fermion.events import Bus, BusError, ModelRollout, RolloutChange
from fermion.model_store import Alias, Bounds, Rollouts, StoreSettings, open_registry

from .console import console, errors

canary_app = typer.Typer(help="Canary rollouts and shadow traffic on an alias.", no_args_is_help=True)
Model = Annotated[str, typer.Argument(help="model name")]
AliasOpt = Annotated[str, typer.Option(help="the alias whose traffic is split")]


def _rollouts() -> tuple[Rollouts, str]:
    settings = StoreSettings()
    return Rollouts(open_registry(settings)), settings.tenant


@canary_app.command("start")
def canary_start(
    model: Model,
    version: Annotated[int, typer.Argument(help="the canary version")],
    alias: AliasOpt = "production",
    steps: Annotated[str, typer.Option(help="weight steps in percent, comma-separated")] = "10,50,100",
    bake: Annotated[float, typer.Option(help="seconds each step bakes before the next")] = 300.0,
    manual: Annotated[bool, typer.Option(help="step by hand: the controller neither steps nor rolls back")] = False,
    min_requests: Annotated[int, typer.Option(help="canary requests per step before it is judged")] = 50,
) -> None:
    """Send the first step's share of the alias's traffic to VERSION."""
    try:
        weights = [int(s) for s in steps.split(",")]
    except ValueError as exc:
        raise FermionError(f"--steps must be comma-separated percentages, like 10,50,100; got {steps!r}") from exc
    rollouts, tenant = _rollouts()
    record = rollouts.start(
        tenant,
        model,
        alias,
        version,
        steps=weights,
        bake_s=bake,
        bounds=Bounds(min_requests=min_requests),
        automatic=not manual,
    )
    _announce(tenant, model, alias, record, version)
    _show(model, alias, record)


@canary_app.command("step")
def canary_step(
    model: Model,
    alias: AliasOpt = "production",
    to: Annotated[int | None, typer.Option(help="set the canary's weight to this percentage")] = None,
) -> None:
    """Move the canary to its next step (or to --to percent; 100 finishes it, 0 ends it)."""
    rollouts, tenant = _rollouts()
    _show(model, alias, rollouts.step(tenant, model, alias, to=to))


@canary_app.command("finish")
def canary_finish(model: Model, alias: AliasOpt = "production") -> None:
    """Send all of the alias's traffic to the canary (`fermion models rollback` undoes it)."""
    rollouts, tenant = _rollouts()
    _show(model, alias, rollouts.finish(tenant, model, alias))


@canary_app.command("abort")
def canary_abort(model: Model, alias: AliasOpt = "production") -> None:
    """Send all of the alias's traffic back to the incumbent."""
    rollouts, tenant = _rollouts()
    _show(model, alias, rollouts.abort(tenant, model, alias))


@canary_app.command("status")
def canary_status(model: Model, alias: AliasOpt = "production") -> None:
    """The alias's split, its rollout plan and its recent moves."""
    rollouts, tenant = _rollouts()
    _show(model, alias, rollouts.registry.alias(tenant, model, alias), changes=True)


@canary_app.command("shadow")
def canary_shadow(
    model: Model,
    version: Annotated[str, typer.Argument(help="the version to mirror traffic to, or 'off'")],
    alias: AliasOpt = "production",
) -> None:
    """Mirror the alias's traffic to VERSION (answers compared, never returned); 'off' stops it."""
    if version != "off" and not version.isdigit():
        raise FermionError(f"give a version number or 'off'; got {version!r}")
    rollouts, tenant = _rollouts()
    _show(model, alias, rollouts.set_shadow(tenant, model, alias, None if version == "off" else int(version)))


def _show(model: str, alias: str, record: Alias, *, changes: bool = False) -> None:
    split = ", ".join(f"v{v} {w}%" for v, w in sorted(record.split().items()))
    console.print(f"{model}@{alias}: {split}" + (f" (shadow v{record.shadow})" if record.shadow else ""))
    if (plan := record.rollout) is not None:
        mode = "automatic" if plan.automatic else "manual"
        console.print(
            f"rollout of v{plan.canary} over v{plan.incumbent}: step {plan.step + 1} of {plan.steps}, "
            f"bake {plan.bake_s:g}s, {mode}, step began {plan.step_started_at:%Y-%m-%d %H:%M:%S}"
        )
    if changes and record.changes:
        table = Table("at", "split", "reason")
        for c in record.changes[-10:]:
            table.add_row(f"{c.at:%Y-%m-%d %H:%M:%S}", ", ".join(f"v{v} {w}%" for v, w in c.weights.items()), c.reason)
        console.print(table)


def _announce(tenant: str, model: str, alias: str, record: Alias, version: int) -> None:
    plan = record.rollout
    change = RolloutChange(
        model_name=model,
        alias=alias,
        canary=version,
        incumbent=plan.incumbent if plan else record.version,
        action="started" if plan else "promoted",
        weights=record.split(),
        reason="started from the command line",
    )

    async def send() -> None:
        bus = await Bus.from_settings(local_bus_settings(), name="fermion-cli", timeout_s=2.0)
        try:
            await bus.publish(ModelRollout(tenant=tenant, data=change))
        finally:
            await bus.close()

    try:
        asyncio.run(send())
    except BusError as exc:
        errors.print(f"warning: the rollout started but was not announced on NATS: {exc}", markup=False)
