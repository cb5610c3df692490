"""The one naming rule (`model_store.normal_name`) applied to what a user typed, said when it changed."""

from __future__ import annotations

from fermion.model_store import check_name, normal_name

from .console import note


def model_name(text: str, kind: str = "model") -> str:
    """`text` in its normal form (`Iris` → `iris`), saying so when it differs; InvalidName if none."""
    name = normal_name(text)
    if name != text:
        note(f"{kind} name {text!r} → {name!r} (names are lower case: a-z, 0-9, '.', '_', '-')")
    return check_name(kind, name)
