"""CSV downloads cannot smuggle spreadsheet formulas."""

import pandas as pd

from procurement.export import escape_formulas, to_csv_bytes


def test_cells_starting_with_formula_characters_are_quoted() -> None:
    df = pd.DataFrame(
        {"name": ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "Bolt"], "price": [1.0, 2, 3, 4, 5]}
    )
    out = escape_formulas(df)
    assert out["name"].tolist() == ["'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)", "Bolt"]
    assert out["price"].tolist() == [1.0, 2, 3, 4, 5]


def test_csv_bytes_are_escaped() -> None:
    data = to_csv_bytes(pd.DataFrame({"sku": ["=cmd"]})).decode()
    assert data.splitlines() == ["sku", "'=cmd"]
