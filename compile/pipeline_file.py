"""A user's fitted scikit-learn pipeline, read from a skops file: trusted types only, never pickle.

skops lists every type a file would build before building any; a file naming a type outside
skops' default trusted set (scikit-learn, numpy, scipy and builtins) is refused with those names,
so nothing a stranger wrote runs here. XGBoost and LightGBM estimators are trusted too when
`boosters` is set (the caller converts them; their skops state holds no code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CompileError

INSTALL = "pip install 'fermion[classic]'"
BOOSTERS = (
    "xgboost.sklearn.XGBClassifier",
    "xgboost.core.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.basic.Booster",
)


class UntrustedFile(CompileError):
    """The file is not a skops file, or it names types outside the trusted set (the message lists them)."""


def load_pipeline(path: Path, *, boosters: bool = False) -> Any:
    """The fitted estimator in a `.skops` file, built only from trusted types."""
    try:
        import skops.io as sio
    except ImportError as exc:
        raise ModuleNotFoundError(f"reading .skops files needs skops: {INSTALL}", name=exc.name) from exc
    data = path.read_bytes()
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a zip that is not skops, or not a zip at all
        raise UntrustedFile(f"{path.name} is not a skops file ({type(exc).__name__}: {exc})") from exc
    allowed = set(BOOSTERS) if boosters else set()
    refused = sorted(t for t in untrusted if t not in allowed)
    if refused:
        raise UntrustedFile(
            f"{path.name} names types outside the trusted set, so it is not loaded: {', '.join(refused)}"
        )
    try:
        return sio.loads(data, trusted=sorted(t for t in untrusted if t in allowed))
    except Exception as exc:
        raise UntrustedFile(f"{path.name} could not be loaded: {type(exc).__name__}: {exc}") from exc
