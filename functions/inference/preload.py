"""Pre-warm `FERMION_PRELOAD`'s model in a thread that starts before the web framework is imported.

Cold start is import + fetch + verify + session creation; run one after another they add up, so
the model's part runs beside the imports. A request that arrives before it is done waits for the
same load (the runtime's per-model lock) instead of failing or loading twice.
"""

from __future__ import annotations

import logging
import threading

from .settings import get_settings

log = logging.getLogger("fermion.inference")
_failure: list[str] = []  # why the preload failed, once it has


def problem(thread: threading.Thread | None) -> str | None:
    """Why the function is not ready yet because of its preload model (None: ready, or no preload)."""
    if thread is not None and thread.is_alive():
        return f"still loading {get_settings().preload}"
    return _failure[0] if _failure else None


def start() -> threading.Thread | None:
    """Begin loading the preload model, if one is configured."""
    ref = get_settings().preload
    if not ref:
        return None
    thread = threading.Thread(target=_load, args=(ref,), name="fermion-preload", daemon=True)
    thread.start()
    return thread


def _load(ref: str) -> None:
    from fermion.model_store import RegistryError

    from .errors import InferenceError
    from .runtime import ModelRef, default_runtime

    try:
        model = default_runtime().get(ModelRef.parse(ref))
    except (RegistryError, InferenceError) as exc:  # not fatal: the first request reports the cause
        log.warning("preloading %s failed (%s); it will load on first request", ref, exc)
        _failure[:] = [f"preloading {ref} failed: {exc}"]
        return
    _failure.clear()
    log.info("preloaded %s version %d in %.3fs", model.name, model.version, model.load_seconds)
