"""Weighted aliases: start, step, finish and abort a canary, and mirror traffic to a shadow.

Every move is one compare-and-swap of the alias record (`aliases.py`), so two controllers (or a
controller and a person at the CLI) never lose each other's moves; each move is logged in the
record's bounded `changes`, and finishing a rollout pushes the incumbent onto the history that
`Registry.rollback` walks back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from .aliases import Alias, Bounds, Rollout, moved
from .errors import AliasConflict, AliasNotFound, InvalidName
from .registry import Registry


class Rollouts:
    """Canary and shadow moves on one registry's aliases."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def start(
        self,
        tenant: str,
        name: str,
        alias: str,
        canary: int,
        *,
        steps: Sequence[int] = (10, 50, 100),
        bake_s: float = 300.0,
        bounds: Bounds | None = None,
        automatic: bool = True,
    ) -> Alias:
        """Send `steps[0]`% of `alias`'s traffic to `canary`; the rest stays on the incumbent."""
        self.registry.manifest(tenant, name, canary)  # only a version that exists
        try:
            plan_steps = list(steps)
            Rollout(canary=canary, incumbent=0, steps=plan_steps, bake_s=bake_s)
        except ValidationError as exc:
            raise InvalidName(f"invalid rollout: {exc.errors()[0]['msg']}") from exc

        def begin(current: Alias | None) -> Alias:
            if current is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r} to roll {canary} out on")
            if current.rollout is not None and current.rollout.canary != canary:
                raise AliasConflict(
                    f"alias {alias!r} of {name} is already rolling out version {current.rollout.canary}; "
                    "finish or abort it first"
                )
            if current.version == canary:
                raise AliasConflict(f"alias {alias!r} of {name} already serves version {canary}")
            if current.rollout is not None:
                return current  # the same canary again (a retried request): nothing to do
            plan = Rollout(
                canary=canary,
                incumbent=current.version,
                steps=plan_steps,
                bake_s=bake_s,
                bounds=bounds or Bounds(),
                automatic=automatic,
            )
            first = plan_steps[0]
            if first == 100:
                return moved(current, canary)
            return current.with_split({current.version: 100 - first, canary: first}, f"canary at {first}%", plan)

        return self._swap(tenant, name, alias, begin)

    def step(
        self, tenant: str, name: str, alias: str, *, to: int | None = None, expected_step: int | None = None
    ) -> Alias:
        """Move the canary to its next step (or to `to`%); at 100 the canary becomes the alias's version.

        `expected_step`: move only if the rollout is still at that step (a controller's guard).
        """

        def advance(current: Alias | None) -> Alias:
            plan = self._plan(current, name, alias)
            assert current is not None
            if expected_step is not None and plan.step != expected_step:
                raise AliasConflict(f"rollout of {name}@{alias} moved to step {plan.step} meanwhile")
            nxt = plan.step + 1
            weight = to if to is not None else plan.steps[min(nxt, len(plan.steps) - 1)]
            if not 0 <= weight <= 100:
                raise InvalidName(f"a canary weight is a percentage, 0..100; got {weight}")
            if weight == 100:
                return moved(current, plan.canary)
            if weight == 0:
                return current.with_split({plan.incumbent: 100}, "canary set to 0%", None)
            index = next((i for i, s in enumerate(plan.steps) if s >= weight), len(plan.steps) - 1)
            advanced = plan.model_copy(update={"step": index, "step_started_at": datetime.now(UTC)})
            return current.with_split(
                {plan.incumbent: 100 - weight, plan.canary: weight}, f"canary at {weight}%", advanced
            )

        return self._swap(tenant, name, alias, advance)

    def finish(self, tenant: str, name: str, alias: str) -> Alias:
        """Send all traffic to the canary now; the incumbent goes onto the history (rollback undoes it)."""
        return self.step(tenant, name, alias, to=100)

    def abort(self, tenant: str, name: str, alias: str) -> Alias:
        """Send all traffic back to the incumbent; the canary keeps existing, unserved by this alias."""

        def back(current: Alias | None) -> Alias:
            plan = self._plan(current, name, alias)
            assert current is not None
            return current.with_split({plan.incumbent: 100}, f"canary {plan.canary} rolled back", None)

        return self._swap(tenant, name, alias, back)

    def set_shadow(self, tenant: str, name: str, alias: str, version: int | None) -> Alias:
        """Mirror `alias`'s traffic to `version` (None: stop mirroring)."""
        if version is not None:
            self.registry.manifest(tenant, name, version)

        def mirror(current: Alias | None) -> Alias:
            if current is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
            return current.model_copy(update={"shadow": version, "updated_at": datetime.now(UTC)})

        return self._swap(tenant, name, alias, mirror)

    def _plan(self, current: Alias | None, name: str, alias: str) -> Rollout:
        if current is None:
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
        if current.rollout is None:
            raise AliasConflict(f"alias {alias!r} of {name} has no rollout in progress")
        return current.rollout

    def _swap(self, tenant: str, name: str, alias: str, move: Callable[[Alias | None], Alias]) -> Alias:
        result: list[Alias] = []

        def recorded(current: Alias | None) -> Alias | None:
            record = move(current)
            result[:] = [record]
            return None if record is current else record

        self.registry.update_alias(tenant, name, alias, recorded)
        return result[0]
