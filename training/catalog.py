"""The architectures a training request may name, without importing torch.

The built-in names are the trainer's (`training/architectures.py` builds them; a unit test
keeps the two in step); recipes are whatever installed packages register under the
`fermion.recipes` entry-point group (read by name only, never loaded here).
"""

from __future__ import annotations

from importlib import metadata

ENTRY_POINT_GROUP = "fermion.recipes"
BUILTIN: dict[str, str] = {
    "mlp": "a two-hidden-layer perceptron for tabular features",
    "cnn": "a small CNN for square single-channel images given as flat pixels",
    "rescnn": "a small residual CNN for square single-channel images given as flat pixels",
    "textbag": "an embedding-bag text classifier over rows of token ids (0 = padding)",
}
# Classic estimators (training/classic.py fits them, compile/classic.py converts them; a unit test keeps
# the names in step). A package's recipe cannot take one of these names either.
CLASSIC: dict[str, str] = {
    "sklearn:hist_gradient_boosting": "scikit-learn's histogram gradient-boosted trees for tabular features",
    "sklearn:logistic": "scikit-learn's logistic regression on standardised tabular features",
    "sklearn:ridge": "scikit-learn's ridge regression on standardised tabular features (regression tables)",
    "xgboost": "XGBoost gradient-boosted trees for tabular features",
    "lightgbm": "LightGBM gradient-boosted trees for tabular features",
}


def architectures() -> list[dict[str, str]]:
    """Every architecture a trainer with the same packages installed can build: built-ins, classic, recipes."""
    out = [{"name": n, "source": "built-in", "description": d} for n, d in BUILTIN.items()]
    out += [{"name": n, "source": "classic", "description": d} for n, d in CLASSIC.items()]
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name not in BUILTIN and ep.name not in CLASSIC:  # a package cannot shadow a built-in
            out.append({"name": ep.name, "source": f"recipe ({ep.value})", "description": ""})
    return out
