"""Choosing the version that answers a request to an alias split across versions, and watching it.

An alias record may split its traffic (`{3: 90, 4: 10}`) and name a shadow. `Router` keeps each
alias's split for `alias_ttl_s` (so a weight change reaches a warm function within the TTL) and
picks a version per request: by the hash of the `Fermion-Routing-Key` header when there is one
(one user stays on one version, and as a canary's weight grows its users stay on it: the newest
version takes the low buckets), else at random. `Traffic` ties the choice to what follows it:
per-version stats and samples (`traffic.py`) and the shadow's mirrored copy (`shadow.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from fermion.model_store import AliasNotFound, ModelNotFound

from .runtime import LoadedModel, ModelRef, ModelRuntime
from .settings import InferenceSettings
from .shadow import Mirror
from .traffic import Telemetry

ROUTING_KEY = "fermion-routing-key"
VERSION_HEADER = "Fermion-Model-Version"
BUCKETS = 100


@dataclass(frozen=True)
class Split:
    """An alias's versions (newest first), their cumulative weights, and its shadow."""

    versions: tuple[int, ...]
    bounds: tuple[int, ...]
    shadow: int | None
    fetched: float

    @classmethod
    def of(cls, weights: Mapping[int, int], shadow: int | None, fetched: float) -> Split:
        """From a version → weight map summing to 100."""
        versions = tuple(sorted(weights, reverse=True))
        bounds, total = [], 0
        for v in versions:
            total += weights[v]
            bounds.append(total)
        return cls(versions, tuple(bounds), shadow, fetched)

    def choose(self, key: str | None) -> int:
        """The version for a request: by `key`'s bucket when given (sticky), else at random."""
        if len(self.versions) == 1:
            return self.versions[0]
        if key is None:
            bucket = random.randrange(BUCKETS)
        else:
            bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % BUCKETS
        for version, bound in zip(self.versions, self.bounds, strict=True):
            if bucket < bound:
                return version
        return self.versions[-1]


class Router:
    """Alias splits, each re-read from the registry after the alias TTL."""

    def __init__(self, runtime: Callable[[], ModelRuntime]) -> None:
        self._runtime = runtime
        self._splits: dict[tuple[str, str, str], Split | None] = {}
        self._missing: dict[tuple[str, str, str], float] = {}

    def cached(self, tenant: str, name: str, alias: str, ttl_s: float) -> Split | bool | None:
        """The alias's split while fresh; None if the alias is known not to exist; False when stale."""
        key = (tenant, name, alias)
        if key not in self._splits:
            return False
        split = self._splits[key]
        fetched = split.fetched if split is not None else self._missing.get(key, 0.0)
        return split if time.monotonic() - fetched < ttl_s else False

    def refresh(self, tenant: str, name: str, alias: str) -> Split | None:
        """Read the alias record (I/O: off the event loop); None when it does not exist."""
        key, now = (tenant, name, alias), time.monotonic()
        try:
            record = self._runtime().registry.alias(tenant, name, alias)
        except (AliasNotFound, ModelNotFound):
            self._splits[key] = None
            self._missing[key] = now
            return None
        split = self._splits[key] = Split.of(record.split(), record.shadow, now)
        return split


@dataclass
class Route:
    """One request's path: the reference it resolved to, and what is reported about it."""

    ref: ModelRef
    tenant: str
    alias: str | None
    shadow: int | None
    traffic: Traffic
    started: float = field(default_factory=time.perf_counter)
    version: int | None = None

    @contextlib.contextmanager
    def observed(self) -> Iterator[None]:
        """Count the request for its version, as an error if what it wraps raises."""
        answered = False
        try:
            yield
            answered = True
        finally:
            if self.version is not None:
                self.traffic.telemetry.observe(self, time.perf_counter() - self.started, error=not answered)

    def answered(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], results: dict[str, np.ndarray], request_id: str | None
    ) -> dict[str, str]:
        """Sample and mirror (both only enqueue), and the headers that say which version answered."""
        self.traffic.telemetry.sample(model, feeds, results, request_id)
        if self.shadow is not None and self.shadow != model.version and self.alias is not None:
            self.traffic.mirror.submit(self, model, feeds, results, time.perf_counter() - self.started)
        return {VERSION_HEADER: str(model.version)}


class Traffic:
    """Routing, per-version telemetry and shadow mirroring for one inference app."""

    def __init__(self, runtime: Callable[[], ModelRuntime], settings: Callable[[], InferenceSettings]) -> None:
        self._settings = settings
        self.router = Router(runtime)
        self.telemetry = Telemetry(settings)
        self.mirror = Mirror(runtime, self.telemetry)

    async def route(self, ref: ModelRef, headers: Mapping[str, str], tenant: str | None = None) -> Route:
        """Where this request goes: an explicit version as asked, an alias's split by routing key."""
        settings = self._settings()
        tenant = tenant or settings.tenant
        self.telemetry.start()
        if ref.version is not None:
            route = Route(ref, tenant, None, None, self)
            route.version = ref.version
            return route
        alias = ref.alias or settings.default_alias
        split = self.router.cached(tenant, ref.name, alias, settings.alias_ttl_s)
        if split is False:
            split = await asyncio.to_thread(self.router.refresh, tenant, ref.name, alias)
        if not isinstance(split, Split):
            return Route(ref, tenant, alias, None, self)  # no such alias: the runtime answers as it always has
        version = split.choose(headers.get(ROUTING_KEY))
        route = Route(ModelRef(ref.name, None, version), tenant, alias, split.shadow, self)
        route.version = version
        return route
