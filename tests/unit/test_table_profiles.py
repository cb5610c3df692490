"""The upload profile's column typing and label rules (model_store/tables.py), as the table contract says."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fermion.model_store.tables import TableError, guess_label, profile_table


def _kinds(csv: str) -> dict[str, str]:
    return {c.name: c.kind for c in profile_table(csv.encode(), "csv").columns}


def test_columns_are_typed_as_the_contract_says() -> None:
    rows = "".join(f"{i},{i * 0.5},{'abcd'[i % 4]},{' Yes' if i % 2 else 'n'},word{i},{i % 2}\n" for i in range(40))
    assert _kinds("n,x,cat,flag,free,label\n" + rows) == {
        "n": "integer",
        "x": "number",
        "cat": "category",
        "flag": "boolean",
        "free": "text",
        "label": "integer",
    }


def test_a_category_needs_at_most_half_as_many_values_as_rows() -> None:
    assert _kinds("c,label\na,1\nb,0\nc,1\nd,0\n")["c"] == "text"
    assert _kinds("c,label\na,1\nb,0\na,1\nb,0\n")["c"] == "category"


def test_blanks_and_nan_are_missing() -> None:
    p = profile_table(b"x,s,label\n1.5,a,0\n,,1\nnan,a,0\n2.5,b,1\n", "csv")
    assert {c.name: c.missing for c in p.columns} == {"x": 2, "s": 1, "label": 0}


@pytest.mark.parametrize(
    ("columns", "given", "label"),
    [
        (["a", "Target", "b"], None, "Target"),
        (["a", "outcome", "class"], None, "class"),
        (["a", "b", "species"], None, "species"),
        (["a", "label", "b"], "b", "b"),
        (["a", "label"], "missing", "label"),
    ],
)
def test_the_label_guess(columns: list[str], given: str | None, label: str) -> None:
    assert guess_label(columns, given) == label


def test_integer_labels_with_few_values_are_classes_else_a_regression() -> None:
    few = "x,label\n" + "".join(f"{i},{i % 20}\n" for i in range(100))
    many = "x,label\n" + "".join(f"{i},{i % 21}\n" for i in range(100))
    assert profile_table(few.encode(), "csv").label.task == "classification"  # type: ignore[union-attr]
    regression = profile_table(many.encode(), "csv").label
    assert regression is not None and regression.task == "regression"
    assert regression.target is not None and (regression.target.min, regression.target.max) == (0, 20)
    forced = profile_table(many.encode(), "csv", task="classification").label
    assert forced is not None and len(forced.classes) == 21


def test_a_csv_whose_later_block_changes_type_is_read_whole() -> None:
    # The streaming reader types columns from the first 8 MiB; a text value after that would fail it.
    csv = b"a,b,label\n" + b"".join(f"{i},{i % 5},{i % 2}\n".encode() for i in range(1_000_000)) + b"zz,1,0\n"
    p = profile_table(csv, "csv")
    assert p.rows == 1_000_001
    assert {c.name: c.kind for c in p.columns}["a"] == "text"


def test_parquet_and_unreadable_files() -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"flag": [True, False, None, True], "y": ["a", "b", "a", "b"]}), buf)
    p = profile_table(buf.getvalue(), "parquet")
    assert [(c.name, c.kind, c.missing) for c in p.columns] == [("flag", "boolean", 1), ("y", "category", 0)]
    with pytest.raises(TableError):
        profile_table(b"PAR1 not really", "parquet")
