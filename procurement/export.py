"""Exports for spreadsheets."""

from __future__ import annotations

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (CSV injection) with a quote."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            s = out[col].astype("string")
            risky = s.str.startswith(_FORMULA_START).fillna(False)
            out[col] = s.where(~risky, "'" + s)
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return escape_formulas(df).to_csv(index=False).encode("utf-8")
