"""Validated reading of price files. Every source (CSV, generator, later APIs) passes through
``validate_prices`` before anything is stored, so the rules live in one place."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

REQUIRED = ("sku", "date", "price")
OPTIONAL = ("name", "supplier", "currency", "quantity", "category", "unit")
MAX_ERRORS_REPORTED = 50


@dataclass(frozen=True)
class RowError:
    line: int | None  # line in the file (header is line 1); None for whole-file problems
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class ImportValidationError(ValueError):
    """Raised when input is rejected; ``errors`` lists every problem found (up to a cap)."""

    def __init__(self, errors: list[RowError], source: str = "input") -> None:
        self.errors = errors
        self.source = source
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        super().__init__(f"{source}: {errors[0]}{more}")


def _read_text(src: str | Path | IO[bytes] | bytes) -> str:
    if isinstance(src, bytes):
        raw = src
    elif isinstance(src, (str, Path)):
        raw = Path(src).read_bytes()
    else:
        raw = src.read()
    if b"\x00" in raw[:65536]:
        raise ImportValidationError([RowError(None, None, "not a text file (binary content)")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportValidationError(
            [RowError(None, None, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8")]
        ) from None


def _label(src: str | Path | IO[bytes] | bytes, source: str | None) -> str:
    return source or (str(src) if isinstance(src, (str, Path)) else "input")


def _nonempty_text(src: str | Path | IO[bytes] | bytes, label: str) -> str:
    """The file as text; binary, non-UTF-8 and empty files are errors naming ``label``."""
    try:
        text = _read_text(src)
    except ImportValidationError as exc:
        raise ImportValidationError(exc.errors, label) from None
    if not text.strip():
        raise ImportValidationError([RowError(None, None, "the file is empty")], label)
    return text


def _csv_strings(
    src: str | Path | IO[bytes] | bytes, label: str, required: tuple[str, ...]
) -> pd.DataFrame:
    """A comma-separated file as a table of strings with lower-case column names; missing
    required columns and a file with only a header are errors."""
    text = _nonempty_text(src, label)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as exc:
        raise ImportValidationError(
            [RowError(None, None, f"not a valid CSV: {exc}")], label
        ) from None
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ImportValidationError(
            [RowError(1, c, "required column is missing") for c in missing], label
        )
    if df.empty:
        raise ImportValidationError([RowError(None, None, "no data rows (only a header)")], label)
    return df


def read_price_csv(src: str | Path | IO[bytes] | bytes, source: str | None = None) -> pd.DataFrame:
    """Read and validate a CSV with columns ``sku,date,price`` (optional name, supplier, ...)."""
    label = _label(src, source)
    return validate_prices(_csv_strings(src, label, REQUIRED), source=label)


def validate_prices(
    df: pd.DataFrame, source: str = "input", max_errors: int | None = MAX_ERRORS_REPORTED
) -> pd.DataFrame:
    """Check a price table and return it typed (date as ``datetime.date``, price as float).

    Rows are numbered as lines of a CSV file with a header: the first data row is line 2.
    """
    errors: list[RowError] = []
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ImportValidationError(
            [RowError(1, c, "required column is missing") for c in missing], source
        )
    if len(df) == 0:
        raise ImportValidationError([RowError(None, None, "no data rows (only a header)")], source)

    out = df[[c for c in (*REQUIRED, *OPTIONAL) if c in df.columns]].copy()
    lines = np.arange(2, len(out) + 2)
    out["sku"] = out["sku"].astype(str).str.strip()
    for i in np.flatnonzero((out["sku"] == "").to_numpy()):
        errors.append(RowError(int(lines[i]), "sku", "is blank"))

    raw_dates = out["date"]
    if pd.api.types.is_datetime64_any_dtype(raw_dates):
        parsed = pd.to_datetime(raw_dates)
    elif len(raw_dates) and not isinstance(raw_dates.iloc[0], str):
        parsed = pd.to_datetime(raw_dates, errors="coerce")
    else:
        parsed = pd.to_datetime(
            raw_dates.astype(str).str.strip(), format="%Y-%m-%d", errors="coerce"
        )
    for i in np.flatnonzero(parsed.isna().to_numpy()):
        errors.append(
            RowError(int(lines[i]), "date", f"{raw_dates.iloc[i]!r} is not a date (YYYY-MM-DD)")
        )

    raw_prices = out["price"]
    prices = pd.to_numeric(raw_prices, errors="coerce")
    bad = prices.isna() | ~np.isfinite(prices.fillna(0)) | (prices <= 0)
    for i in np.flatnonzero(bad.to_numpy()):
        val = raw_prices.iloc[i]
        reason = (
            "is not a number" if pd.isna(prices.iloc[i]) else "must be a positive finite number"
        )
        errors.append(RowError(int(lines[i]), "price", f"{val!r} {reason}"))

    if "quantity" in out.columns:
        raw_q = out["quantity"].replace("", np.nan)
        q = pd.to_numeric(raw_q, errors="coerce")
        badq = (raw_q.notna() & q.isna()) | (q < 0) | np.isinf(q.fillna(0))
        for i in np.flatnonzero(badq.to_numpy()):
            errors.append(
                RowError(int(lines[i]), "quantity", f"{raw_q.iloc[i]!r} is not a quantity >= 0")
            )
        out["quantity"] = q

    if errors:
        raise ImportValidationError(errors[:max_errors], source)

    out["date"] = parsed.dt.date
    out["price"] = prices.astype(float)
    for col in ("name", "supplier", "currency", "category", "unit"):
        if col in out.columns:
            out[col] = out[col].astype(str).str.strip()
    if "currency" in out.columns:
        out["currency"] = out["currency"].str.upper().replace("", "USD")
        badc = ~out["currency"].str.fullmatch(r"[A-Z]{3}")
        for i in np.flatnonzero(badc.to_numpy()):
            errors.append(RowError(int(lines[i]), "currency", "must be a 3-letter ISO code"))

    key = out[["sku", "date"]]
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        d = out.loc[dup, ["sku", "date", "price"]].assign(line=lines[dup])
        for (sku, date), g in d.groupby(["sku", "date"], sort=False):
            if g["price"].nunique() > 1:
                ls = ", ".join(str(x) for x in g["line"].tolist()[:5])
                lines_of_group = (
                    g["line"].tolist() if max_errors is None else g["line"].tolist()[1:2]
                )
                for line in lines_of_group:
                    errors.append(
                        RowError(
                            int(line),
                            "price",
                            f"sku {sku} on {date} appears on lines {ls} with different prices",
                        )
                    )
        out = out[~key.duplicated(keep="first").to_numpy()]
    if errors:
        raise ImportValidationError(errors[:max_errors], source)
    return out.reset_index(drop=True)


def read_lenient_csv(path: str | Path) -> pd.DataFrame:
    """Read ``sku,date,price`` for analysis (backtests): rows with a missing or non-numeric price
    are dropped, negative prices are kept (they happen: WTI on 2020-04-20)."""
    df = _csv_strings(path, str(path), REQUIRED)
    df["date"] = pd.to_datetime(df["date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    df["price"] = pd.to_numeric(df["price"], errors="coerce")
    df = df.dropna(subset=["date", "price"])
    df = df[np.isfinite(df["price"]) & (df["sku"].str.strip() != "")]
    if df.empty:
        raise ImportValidationError([RowError(None, None, "no usable rows")], str(path))
    return df[["sku", "date", "price"]]


DATE_FORMATS = {
    "YYYY-MM-DD": "%Y-%m-%d",
    "DD/MM/YYYY": "%d/%m/%Y",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD.MM.YYYY": "%d.%m.%Y",
}


def read_table(raw: bytes, filename: str) -> pd.DataFrame:
    """A CSV (delimiter detected: , ; tab |) or Excel sheet as a table of strings."""
    if filename.lower().endswith((".xlsx", ".xlsm")):
        try:
            df = pd.read_excel(io.BytesIO(raw), dtype=str, engine="openpyxl").fillna("")
        except Exception as exc:  # openpyxl raises many types for broken files
            raise ImportValidationError(
                [RowError(None, None, f"not a readable Excel file: {exc}")], filename
            ) from None
    else:
        text = _nonempty_text(raw, filename)
        import csv

        try:
            sep = csv.Sniffer().sniff(text[:20000], delimiters=",;\t|").delimiter
        except csv.Error:
            sep = ","
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def looks_decimal_comma(values: pd.Series) -> bool:
    """True when numbers are written like 1.234,56 or 12,5 (Brazil, much of Europe)."""
    v = values.astype(str).str.strip()
    comma = v.str.fullmatch(r"-?[\d.]*\d,\d+").mean()
    dot = v.str.fullmatch(r"-?[\d,]*\d\.\d+").mean()
    return bool(comma > dot)


def apply_mapping(
    df: pd.DataFrame,
    mapping: dict[str, str],
    date_format: str = "YYYY-MM-DD",
    decimal_comma: bool = False,
    source: str = "upload",
    validate: bool = True,
) -> pd.DataFrame:
    """Rename the user's columns to ours, normalise dates and decimals, then validate.

    ``mapping``: our column (sku, date, price, name, ...) -> the file's column. Values that do not
    parse are left as they were so validation reports them with their line and field.
    """
    out = pd.DataFrame({ours: df[theirs] for ours, theirs in mapping.items() if theirs})
    if "date" in out and date_format != "YYYY-MM-DD":
        parsed = pd.to_datetime(
            out["date"].str.strip(), format=DATE_FORMATS[date_format], errors="coerce"
        )
        out["date"] = parsed.dt.strftime("%Y-%m-%d").where(parsed.notna(), out["date"])
    for col in ("price", "quantity"):
        if col in out:
            s = out[col].astype(str).str.strip().str.replace(r"[^\d,.\-]", "", regex=True)
            s = (
                s.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
                if decimal_comma
                else s.str.replace(",", "", regex=False)
            )
            out[col] = s.where(out[col].astype(str).str.strip() != "", "")
    return validate_prices(out, source=source) if validate else out


def read_stock_csv(src: str | Path | IO[bytes] | bytes, source: str | None = None) -> pd.DataFrame:
    """``sku,on_hand,lead_time_days``: stock on hand (>= 0) and supplier lead time (whole days)."""
    label = _label(src, source)
    df = _csv_strings(src, label, ("sku", "on_hand", "lead_time_days"))
    df["sku"] = df["sku"].str.strip()
    errors: list[RowError] = []
    on_hand = pd.to_numeric(df["on_hand"], errors="coerce")
    lead = pd.to_numeric(df["lead_time_days"], errors="coerce")
    for i in range(len(df)):
        line = i + 2
        if not df["sku"].iloc[i]:
            errors.append(RowError(line, "sku", "is blank"))
        if not (np.isfinite(on_hand.iloc[i]) and on_hand.iloc[i] >= 0):
            errors.append(
                RowError(line, "on_hand", f"{df['on_hand'].iloc[i]!r} is not a quantity >= 0")
            )
        if not (
            np.isfinite(lead.iloc[i]) and lead.iloc[i] >= 0 and float(lead.iloc[i]).is_integer()
        ):
            errors.append(
                RowError(
                    line,
                    "lead_time_days",
                    f"{df['lead_time_days'].iloc[i]!r} is not whole days >= 0",
                )
            )
    dup = df["sku"].duplicated(keep=False)
    for i in np.flatnonzero(dup.to_numpy())[1::2]:
        errors.append(RowError(int(i) + 2, "sku", f"{df['sku'].iloc[i]} appears more than once"))
    if errors:
        raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], label)
    return pd.DataFrame({"sku": df["sku"], "on_hand": on_hand, "lead_time_days": lead.astype(int)})


def read_catalog_csv(
    src: str | Path | IO[bytes] | bytes, source: str | None = None
) -> pd.DataFrame:
    """``sku`` plus any of name, supplier, category, unit, currency: creates or updates products."""
    label = _label(src, source)
    df = _csv_strings(src, label, ("sku",))
    df["sku"] = df["sku"].str.strip()
    errors = [
        RowError(i + 2, "sku", "is blank") for i in np.flatnonzero((df["sku"] == "").to_numpy())
    ]
    if "currency" in df.columns:
        cur = df["currency"].str.strip().str.upper()
        bad = ~(cur.str.fullmatch(r"[A-Z]{3}") | (cur == ""))
        errors += [
            RowError(int(i) + 2, "currency", "must be a 3-letter ISO code")
            for i in np.flatnonzero(bad.to_numpy())
        ]
        df["currency"] = cur
    for i in np.flatnonzero(df["sku"].duplicated().to_numpy()):
        errors.append(RowError(int(i) + 2, "sku", f"{df['sku'].iloc[i]} appears more than once"))
    if errors:
        raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], label)
    keep = [
        c for c in ("sku", "name", "supplier", "category", "unit", "currency") if c in df.columns
    ]
    return df[keep]


def split_valid(df: pd.DataFrame, source: str = "input") -> tuple[pd.DataFrame, list[RowError]]:
    """The rows that pass validation, and every error of the rows that do not, for a buyer who
    chooses to drop the bad rows. Conflicting duplicates are dropped on all their lines."""
    rows = df.reset_index(drop=True).assign(_line=np.arange(2, len(df) + 2))
    errors: list[RowError] = []
    # value errors are reported before duplicate conflicts are looked for: a few passes at most
    for _ in range(3):
        try:
            clean = validate_prices(rows.drop(columns="_line"), source, max_errors=None)
            return clean, errors
        except ImportValidationError as exc:
            if any(e.line is None or e.line == 1 for e in exc.errors):
                raise ImportValidationError(exc.errors[:MAX_ERRORS_REPORTED], source) from None
            # map the pass's line numbers back to the file's
            file_lines = rows["_line"].to_numpy()
            bad = {int(file_lines[e.line - 2]) for e in exc.errors}
            errors += [
                RowError(int(file_lines[e.line - 2]), e.field, e.message) for e in exc.errors
            ]
            rows = rows[~rows["_line"].isin(bad)].reset_index(drop=True)
            if rows.empty:
                raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], source) from None
    raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], source)
