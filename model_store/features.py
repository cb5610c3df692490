"""A table model's feature schema: the columns it takes, how it prepares them, and what it predicts.

Recorded in the manifest (`Manifest.features`) by the trainer for models trained on tables, and read
by every door that takes rows: `:predict` and the CLI match columns by name in any order, drop the
recorded label column, and refuse missing or unknown columns naming them; OIP v2 clients send one
tensor per column, named by it.

The graph contract (the trainer's export, the server's input):
- one graph input per column, named by the column, shape [-1, 1]: FP32 for number, integer and
  boolean columns (booleans as 0/1; blanks as NaN, imputed inside the graph), BYTES for category
  and text columns (blanks as "", unseen values handled as documented in `Column.categories`);
- outputs: classification has `logits` [-1, C] and `probabilities` [-1, C] (softmax inside the
  graph), classes in the order of `classes`; regression has `prediction` [-1, 1] in the label's units.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ColumnKind = Literal["number", "integer", "boolean", "category", "text"]
Task = Literal["classification", "regression"]

LOGITS = "logits"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"


class Column(BaseModel):
    """One input column as the model takes it and prepares it inside its graph."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: ColumnKind
    datatype: Literal["FP32", "BYTES"]
    """The OIP datatype of its graph input."""
    impute: float | str | None = None
    """What a blank becomes (the training median for numbers, the most frequent value for categories)."""
    categories: list[str] = []
    """A category's vocabulary, in one-hot order; a value outside it encodes as all zeros."""
    mean: float | None = None
    std: float | None = None
    """Scaling of a numeric column after imputation: (x - mean) / std."""
    true_values: list[str] = []
    """A boolean column's spellings of true, lower-case ("yes", "true", "1", ...), for rows sent as text."""


class Target(BaseModel):
    """A regression label's statistics on the training rows, in its own units."""

    model_config = ConfigDict(frozen=True)

    mean: float
    std: float
    min: float
    max: float


class FeatureSchema(BaseModel):
    """The columns of a table model, in graph-input order, its label column and its task."""

    model_config = ConfigDict(frozen=True)

    columns: list[Column] = Field(min_length=1)
    label: str
    """The label column of the training table: dropped when a row to predict carries it."""
    task: Task
    classes: list[str] = []
    """Classification: class names in output order (the manifest's `labels` too)."""
    target: Target | None = None
    """Regression: the label's statistics."""
    dropped: dict[str, str] = {}
    """Columns of the training table the model does not take, each with why (an id, constant, ...)."""

    def names(self) -> list[str]:
        """The column names, in graph-input order."""
        return [c.name for c in self.columns]
