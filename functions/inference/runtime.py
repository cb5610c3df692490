"""Model sessions: resolve a reference through the registry, verify, load into ONNX Runtime.

The providers a session really got come from `session.get_providers()`; a GPU that was asked
for and not obtained is logged loudly and flagged, or refused when `require_gpu` is set.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from fermion.model_store import MODEL_FILE, Manifest, Registry, open_registry
from fermion.model_store.manifest import VARIANT_FILES
from fermion.model_store.reader import EarlyFetch

from .errors import BadRequest, ModelUnavailable
from .protocol import all_finite, datatype_name, onnx_dtype
from .settings import GPU_PROVIDERS, InferenceSettings, get_settings

log = logging.getLogger("fermion.inference")
# What ONNX Runtime raises (its errors derive from Exception directly, one class per status code).
ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    e for e in vars(ort_state).values() if isinstance(e, type) and issubclass(e, Exception)
)

_REF = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """`name`, `name@alias`, or a name with an explicit version."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str, version: int | str | None = None) -> ModelRef:
        """Parse `name[@alias]` (and an optional version from the URL)."""
        m = _REF.match(text)
        if not m:
            raise BadRequest(f"invalid model reference {text!r}: use NAME, NAME@ALIAS or NAME/versions/N")
        if version is not None:
            text_version = str(version)
            # ASCII digits only: str.isdigit() also takes '²' (which int() refuses) and '٣' (which it reads as 3).
            if not (text_version.isascii() and text_version.isdigit()) or int(text_version) < 1:
                raise BadRequest(f"invalid model version {version!r}: versions are positive integers")
            if m["alias"]:
                raise BadRequest(f"give an alias or a version, not both: {text!r} version {version}")
            return cls(m["name"], None, int(version))
        return cls(m["name"], m["alias"])


@dataclass(eq=False)
class LoadedModel:
    """An ONNX Runtime session for one model version."""

    manifest: Manifest
    session: ort.InferenceSession
    providers: list[str]
    gpu_fallback: bool
    load_seconds: float
    variant: str
    size: int
    inputs: dict[str, tuple[np.dtype, list[int | None]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest.name

    @cached_property
    def output_names(self) -> list[str]:
        """The session's outputs, in its order (asked of the session once: each ask builds objects)."""
        return [o.name for o in self.session.get_outputs()]

    @property
    def version(self) -> int:
        return self.manifest.version

    def check(self, name: str, array: np.ndarray) -> None:
        """Raise BadRequest unless `array` fits input `name`'s datatype and shape."""
        if name not in self.inputs:
            raise BadRequest(f"model {self.name} has no input {name!r}; its inputs are {sorted(self.inputs)}")
        dtype, shape = self.inputs[name]
        if array.dtype != dtype:
            raise BadRequest(f"input {name!r} must be {datatype_name(dtype)}, got {datatype_name(array.dtype)}")
        if len(array.shape) != len(shape) or any(
            d is not None and d != s for d, s in zip(shape, array.shape, strict=True)
        ):
            want = [d if d is not None else -1 for d in shape]
            raise BadRequest(f"input {name!r} must have shape {want} (-1: any), got {list(array.shape)}")
        # A table model imputes blanks (NaN) inside its graph (model_store/features.py); infinity is never a value.
        if array.dtype.kind == "f" and not all_finite(array) and (not self.manifest.features or np.isinf(array).any()):
            raise BadRequest(f"input {name!r} contains NaN or infinity")

    def run(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None, *, shrink: bool = False
    ) -> dict[str, np.ndarray]:
        """Run the session; `outputs` names which outputs to return (all by default).

        `shrink` gives the memory the run grew ONNX Runtime's arenas by back when it ends.
        """
        for name, array in feeds.items():
            self.check(name, array)
        if missing := set(self.inputs) - set(feeds):
            raise BadRequest(f"model {self.name} needs input(s) {sorted(missing)}; got {sorted(feeds)}")
        known = self.output_names
        names = outputs or known
        if unknown := [n for n in names if n not in known]:
            raise BadRequest(f"model {self.name} has no output(s) {unknown}; its outputs are {sorted(known)}")
        try:
            out = self.session.run(names, feeds, _shrinking(self.providers) if shrink else None)
        except ort_state.InvalidArgument as exc:
            raise BadRequest(f"model {self.name} refused the inputs: {exc}") from exc
        except ORT_ERRORS as exc:
            raise ModelUnavailable(f"model {self.name} version {self.version} failed to run: {exc}") from exc
        return dict(zip(names, out, strict=True))


INLINE_ELEMENTS = 65_536  # tensors up to this many elements may run on the event loop...
INLINE_RUN_MS = 0.5  # ...when the model's recent cost per row, times the request's rows, is below this
"""The scheduler's bar for running inline; `_cheap` gives a CPU session that passes it one intra-op thread."""
PROBE_MAX_BYTES = 16 << 20
"""Files larger than this are not probed (making their session twice would cost more than it saves)."""
PROBE_ERRORS: tuple[type[Exception], ...] = (*ORT_ERRORS, ValueError, TypeError)
"""A CPU session whose one-row run takes less than this keeps one intra-op thread (`_cheap`)."""


def _cheap(session: ort.InferenceSession) -> bool:
    """Whether a one-row run of this CPU session is so cheap that an intra-op pool only slows it.

    Such a model runs inline on the event loop (`INLINE_RUN_MS`, the scheduler's bar): waking pool threads
    costs more than its whole run, and they would contend with the event loop for its core
    (bench/serving.py). A heavier one runs in worker threads and batches, where the pool pays
    (bench/batching.py), so its session is made again with the pool. A GPU session keeps its pool
    (made once: a TensorRT engine is expensive to build twice), as does a model whose inputs cannot
    be probed with zeros.
    """
    if any(p in GPU_PROVIDERS for p in session.get_providers()):
        return False
    try:
        feeds = {
            i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape], onnx_dtype(i.type))
            for i in session.get_inputs()
        }
        if sum(a.size for a in feeds.values()) > INLINE_ELEMENTS:
            return False  # a row this large never runs inline anyway: no need to run it to know
        started = time.perf_counter()
        session.run(None, feeds)  # the first run allocates: far over the bar, it says enough
        if (time.perf_counter() - started) * 1000 > 20 * INLINE_RUN_MS:
            return False
        started = time.perf_counter()
        session.run(None, feeds)
    except PROBE_ERRORS:
        return False
    return (time.perf_counter() - started) * 1000 < INLINE_RUN_MS


def _shrinking(providers: list[str]) -> ort.RunOptions:
    """Run options that free the arenas' unused chunks at the end of the run (CPU, and the GPU in use)."""
    options = ort.RunOptions()
    devices = "cpu:0;gpu:0" if any(p in GPU_PROVIDERS for p in providers) else "cpu:0"
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", devices)
    return options


def cpu_quota() -> int:
    """CPUs this process may use: the cgroup quota (containers, Lambda, Knative), not the host's cores."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # cgroup v2
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):  # cgroup v1
            quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if quota_us > 0:
                cpus = min(cpus, max(1, math.ceil(quota_us / period_us)))
    return max(1, cpus)


def rows_of(feeds: dict[str, np.ndarray]) -> int:
    """Rows in a request: its first input's first axis (1 for a scalar)."""
    first = next(iter(feeds.values()), None)
    return max(int(first.shape[0]), 1) if first is not None and first.ndim else 1


class ModelRuntime:
    """Loaded sessions by (tenant, name, version), with aliases re-resolved after a short TTL."""

    def __init__(self, registry: Registry, settings: InferenceSettings) -> None:
        self.registry = registry
        self.settings = settings
        self._models: OrderedDict[tuple[str, str, int, str], LoadedModel] = OrderedDict()
        self._aliases: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._locks: dict[tuple[str, str, int, str], threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def loaded(self) -> list[LoadedModel]:
        """Every session currently loaded."""
        return list(self._models.values())

    def get(self, ref: ModelRef, tenant: str | None = None, variant: str | None = None) -> LoadedModel:
        """The loaded model for `ref`, loading it (once, however many callers wait) if needed.

        `variant` ("fp32", "int8", "fp16") overrides the setting; "auto" picks by provider.
        """
        tenant = tenant or self.settings.tenant
        wanted = variant or self.settings.variant
        version = ref.version or self._resolve(tenant, ref.name, ref.alias or self.settings.default_alias)
        key = (tenant, ref.name, version, wanted)
        if (model := self._models.get(key)) is not None:
            with contextlib.suppress(KeyError):
                self._models.move_to_end(key)
            return model
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # a request arriving while the model loads waits for that load
            if (model := self._models.get(key)) is None:
                with self._fetching_early(tenant, ref.name, version, wanted) as early:
                    manifest = self.registry.manifest(tenant, ref.name, version)
                    model = self._models[key] = self._load_variant(manifest, wanted, early)
                self._evict()
        return model

    def _fetching_early(
        self, tenant: str, name: str, version: int, wanted: str
    ) -> contextlib.AbstractContextManager[EarlyFetch | None]:
        """The file `wanted` most likely loads, downloading beside the manifest's read (`early_fetch`)."""
        if wanted == "auto":
            wanted = "fp16" if self._gpu() else self.settings.cpu_variant
        filename = VARIANT_FILES.get(wanted)
        if not self.settings.early_fetch or filename is None:
            return contextlib.nullcontext()
        return self.registry.fetching_early(tenant, name, version, filename)

    def _load_variant(self, manifest: Manifest, wanted: str, early: EarlyFetch | None = None) -> LoadedModel:
        """Load the asked-for variant; "auto" is fp16 where a GPU provider is in play, else the CPU choice."""
        available = manifest.variants or {"fp32": MODEL_FILE}
        if wanted != "auto":
            if wanted not in available:
                raise BadRequest(
                    f"{manifest.name} version {manifest.version} has no {wanted!r} variant; it has {sorted(available)}"
                )
            return self._load(manifest, wanted, available[wanted], early)
        cpu_choice = self.settings.cpu_variant if self.settings.cpu_variant in available else "fp32"
        if self._gpu() and "fp16" in available:
            model = self._load(manifest, "fp16", available["fp16"], early)
            if not model.gpu_fallback:
                return model
            log.warning(
                "%s: fp16 chosen for a GPU but the session fell back to CPU; loading %s instead",
                manifest.name,
                cpu_choice,
            )
        return self._load(manifest, cpu_choice, available.get(cpu_choice, MODEL_FILE), early)

    def cached(self, ref: ModelRef, variant: str | None = None, tenant: str | None = None) -> LoadedModel | None:
        """The loaded model for `ref` if answering needs no I/O (loaded, alias fresh); else None."""
        tenant, wanted = tenant or self.settings.tenant, variant or self.settings.variant
        version = ref.version
        if version is None:
            hit = self._aliases.get((tenant, ref.name, ref.alias or self.settings.default_alias))
            if hit is None or time.monotonic() - hit[1] >= self.settings.alias_ttl_s:
                return None
            version = hit[0]
        return self._models.get((tenant, ref.name, version, wanted))

    def _evict(self) -> None:
        """Drop least recently used sessions past `max_models` or `max_model_bytes` (never the newest)."""
        with self._guard:
            while len(self._models) > 1 and (
                len(self._models) > self.settings.max_models
                or sum(m.size for m in self._models.values()) > self.settings.max_model_bytes
            ):
                _, model = self._models.popitem(last=False)
                log.info("unloaded %s version %d (least recently used)", model.name, model.version)

    def _resolve(self, tenant: str, name: str, alias: str) -> int:
        key = (tenant, name, alias)
        cached = self._aliases.get(key)
        now = time.monotonic()
        if cached and now - cached[1] < self.settings.alias_ttl_s:
            return cached[0]
        version = self.registry.resolve(tenant, name, alias)
        self._aliases[key] = (version, now)
        return version

    def _load(self, manifest: Manifest, variant: str, filename: str, early: EarlyFetch | None = None) -> LoadedModel:
        started = time.perf_counter()
        external = bool(set(manifest.files) - {filename, *manifest.variants.values()})
        # External data must sit beside the model: fetch every file then.
        if external:
            path = self.registry.fetch_all(manifest, early=early) / filename
        else:
            path = self.registry.fetch(manifest, filename, early=early)
        pool = self.settings.intra_op_threads or cpu_quota()
        # Probe only what could be cheap: a large model gets the pool at once (its session never made twice).
        small = not external and path.stat().st_size <= PROBE_MAX_BYTES
        cpu_only = not self._gpu()  # a GPU session is made once
        probe = self.settings.intra_op_threads == 0 and pool > 1 and small and cpu_only
        session = self._session(path, manifest, variant, 1 if probe else pool)
        if probe and not _cheap(session):
            session = self._session(path, manifest, variant, pool)
        got = session.get_providers()
        wanted_gpu = [p for p in self.settings.provider_order() if p in GPU_PROVIDERS]
        fallback = bool(wanted_gpu) and not any(p in GPU_PROVIDERS for p in got)
        if fallback:
            log.warning(
                "GPU FALLBACK: %s version %d asked for %s but the session got %s",
                manifest.name,
                manifest.version,
                wanted_gpu,
                got,
            )
        if fallback and self.settings.require_gpu:
            raise ModelUnavailable(
                f"{manifest.name} version {manifest.version}: a GPU provider was required "
                f"({wanted_gpu}) but the session got {got}"
            )
        inputs = {
            i.name: (onnx_dtype(i.type), [d if isinstance(d, int) else None for d in i.shape])
            for i in session.get_inputs()
        }
        seconds = time.perf_counter() - started
        log.info("loaded %s version %d on %s in %.3fs", manifest.name, manifest.version, got, seconds)
        size = sum(e.size for e in manifest.files.values())
        return LoadedModel(manifest, session, got, fallback, seconds, variant, size, inputs=inputs)

    def _session(self, path: Path, manifest: Manifest, variant: str, threads: int) -> ort.InferenceSession:
        """An ONNX Runtime session on the providers asked for, with `threads` intra-op threads."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # ORT's pool spin-waits between runs by default, which starves the event loop that feeds it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(
                str(path), options, providers=self._providers(), provider_options=self._provider_options()
            )
        except ORT_ERRORS as exc:
            reason = str(exc).replace(str(path.parent), "").replace(str(self.registry.cache.root.parent), "")
            raise ModelUnavailable(  # ORT names the file by its path in our cache: never in an answer (issue 25)
                f"{manifest.name} version {manifest.version}: ONNX Runtime cannot load its {variant} file: {reason}"
            ) from exc

    def _provider_options(self) -> list[dict[str, str]]:
        cache = self.settings.trt_cache_dir or str(self.settings.home / "trt-cache")
        options = {
            "TensorrtExecutionProvider": {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": cache,
                "trt_timing_cache_enable": "True",
            }
        }
        return [options.get(p, {}) for p in self._providers()]

    def _gpu(self) -> bool:
        """Whether a GPU provider is among those a session is asked for."""
        return any(p in GPU_PROVIDERS for p in self._providers())

    def _providers(self) -> list[str]:
        available = set(ort.get_available_providers())
        chosen = [p for p in self.settings.provider_order() if p in available]
        if not chosen:
            raise ModelUnavailable(
                f"none of the providers {self.settings.provider_order()} is built into this "
                f"onnxruntime; it has {sorted(available)}"
            )
        return chosen


@lru_cache(maxsize=1)
def default_runtime() -> ModelRuntime:
    """The process's model runtime, built once from the settings."""
    settings = get_settings()
    return ModelRuntime(open_registry(settings, signs=False), settings)  # inference only reads and verifies
