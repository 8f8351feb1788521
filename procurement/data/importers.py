"""Validated reading of price files. Every source (CSV, Excel, generator, APIs, web pages) passes
through ``validate_prices`` before anything is stored, so the rules live in one place.

Numbers and dates are read in one format per file (decimal separator, thousands separator, day
and month order), decided from all of the file's values: a value such as ``12,5`` or
``1,234.50`` or ``12/25/2024`` settles it, and a file whose values are ambiguous (only ``1,234``,
only ``03/04/2024``) or contradict each other is refused with the rows named, unless the user
chose the format. Nothing is stripped from a value: ``2x 10.00`` is not a number.
"""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from procurement import workdays

REQUIRED = ("sku", "date", "price")
OPTIONAL = ("name", "supplier", "currency", "quantity", "category", "unit")
MAX_ERRORS_REPORTED = 50
LINE = "_line"  # optional column: the row's line in the file, kept through validation


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

    def __init__(
        self, errors: list[RowError], source: str = "input", total: int | None = None
    ) -> None:
        self.errors = errors
        self.source = source
        # how many problems there were in all; ``errors`` may hold only the first of them
        self.total = max(total or 0, len(errors))
        more = f" (and {self.total - 1:,} more problems)" if self.total > 1 else ""
        super().__init__(f"{source}: {errors[0]}{more}")


class FormatError(ImportValidationError):
    """The file's numbers or dates are ambiguous or contradict each other; the rows that make
    them so are named. Choosing the format (``FileFormat``) settles it. Dropping bad rows does
    not: the format is decided on the whole file first."""


DECIMALS = {".": "decimal point", ",": "decimal comma"}
DATE_ORDERS = {"ymd": "year-month-day", "dmy": "day/month/year", "mdy": "month/day/year"}


@dataclass(frozen=True)
class FileFormat:
    """How a file writes numbers and dates; ``None`` means: decide from the file's values.

    The thousands separator is the other one of ``.`` and ``,`` (or none). ISO dates
    (2024-12-25) are read in any order setting."""

    decimal: str | None = None  # "." or ","
    date_order: str | None = None  # "ymd", "dmy" or "mdy"

    def __post_init__(self) -> None:
        if self.decimal not in (None, *DECIMALS):
            raise ValueError(f"decimal separator must be '.' or ',', not {self.decimal!r}")
        if self.date_order not in (None, *DATE_ORDERS):
            raise ValueError(f"date order must be ymd, dmy or mdy, not {self.date_order!r}")

    @property
    def thousands(self) -> str | None:
        return {".": ",", ",": "."}.get(self.decimal or "")

    def describe(self) -> str:
        parts = []
        if self.decimal:
            parts.append(f"{DECIMALS[self.decimal]}, '{self.thousands}' between thousands")
        if self.date_order:
            parts.append(f"dates {DATE_ORDERS[self.date_order]}")
        return "; ".join(parts) or "decided from the file"


def sku_key(sku: str) -> str:
    """The identity of a SKU: case and accents ignored, as MySQL's default collation compares
    them. Two SKUs with the same key are refused, so SQLite and MySQL hold the same products."""
    decomposed = unicodedata.normalize("NFKD", sku)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


# --- reading files ---------------------------------------------------------------------------


def _read_bytes(src: str | Path | IO[bytes] | bytes) -> bytes:
    if isinstance(src, bytes):
        return src
    if isinstance(src, (str, Path)):
        return Path(src).read_bytes()
    return src.read()


def _decode(raw: bytes) -> str:
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
        text = _decode(_read_bytes(src))
    except ImportValidationError as exc:
        raise ImportValidationError(exc.errors, label) from None
    if not text.strip():
        raise ImportValidationError([RowError(None, None, "the file is empty")], label)
    return text


def _delimiter(text: str) -> str:
    """The delimiter that splits the header line into the most fields: , ; tab or |."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _text_table(text: str, label: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.StringIO(text), sep=_delimiter(text), dtype=str, keep_default_na=False
        )
    except pd.errors.ParserError as exc:
        raise ImportValidationError(
            [RowError(None, None, f"not a valid CSV: {exc}")], label
        ) from None


def _csv_strings(
    src: str | Path | IO[bytes] | bytes, label: str, required: tuple[str, ...]
) -> pd.DataFrame:
    """A delimited file as a table of strings with lower-case column names; missing required
    columns and a file with only a header are errors."""
    df = _text_table(_nonempty_text(src, label), label)
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ImportValidationError(
            [RowError(1, c, "required column is missing") for c in missing], label
        )
    if df.empty:
        raise ImportValidationError([RowError(None, None, "no data rows (only a header)")], label)
    return df


def check_xlsx(raw: bytes, max_unpacked_bytes: int, label: str = "input") -> None:
    """Refuse an Excel file whose zip would unpack to more than ``max_unpacked_bytes`` (a zip
    bomb), before openpyxl opens it."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ImportValidationError(
            [RowError(None, None, f"not a readable Excel file: {exc}")], label
        ) from None
    if unpacked > max_unpacked_bytes:
        raise ImportValidationError(
            [
                RowError(
                    None,
                    None,
                    f"the Excel file unpacks to {unpacked / 1e6:.0f} MB, more than the limit "
                    f"of {max_unpacked_bytes / 1e6:.0f} MB",
                )
            ],
            label,
        )


def read_table(
    raw: bytes,
    filename: str,
    max_bytes: int | None = None,
    max_unpacked_bytes: int | None = None,
) -> pd.DataFrame:
    """A delimited text file (, ; tab |, from the header) as strings, or the first sheet of an
    Excel file with its cells' types (dates stay dates, numbers stay numbers, text is text).

    Limits default to the settings ``MAX_UPLOAD_MB`` and ``MAX_XLSX_UNPACKED_MB``."""
    if max_bytes is None or max_unpacked_bytes is None:
        from procurement.config import get_settings

        st = get_settings()
        max_bytes = max_bytes if max_bytes is not None else int(st.max_upload_mb * 1e6)
        max_unpacked_bytes = (
            max_unpacked_bytes
            if max_unpacked_bytes is not None
            else int(st.max_xlsx_unpacked_mb * 1e6)
        )
    if len(raw) > max_bytes:
        raise ImportValidationError(
            [
                RowError(
                    None,
                    None,
                    f"the file has {len(raw) / 1e6:.0f} MB, more than the limit of "
                    f"{max_bytes / 1e6:.0f} MB",
                )
            ],
            filename,
        )
    if filename.lower().endswith((".xlsx", ".xlsm")):
        check_xlsx(raw, max_unpacked_bytes, filename)
        try:
            df = pd.read_excel(io.BytesIO(raw), dtype=object, engine="openpyxl")
        except Exception as exc:  # openpyxl raises many types for broken files
            raise ImportValidationError(
                [RowError(None, None, f"not a readable Excel file: {exc}")], filename
            ) from None
        df = df.astype(object).where(df.notna(), "")
    else:
        df = _text_table(_nonempty_text(raw, filename), filename)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_price_csv(
    src: str | Path | IO[bytes] | bytes,
    source: str | None = None,
    fmt: FileFormat | None = None,
) -> pd.DataFrame:
    """Read and validate a price file with columns ``sku,date,price`` (optional name, supplier,
    ...), delimiter from the header, numbers and dates in the file's one format (see module).
    The result keeps each row's line in the ``_line`` column."""
    label = _label(src, source)
    df = _csv_strings(src, label, REQUIRED)
    df[LINE] = np.arange(2, len(df) + 2)
    return validate_prices(df, source=label, fmt=fmt)


# --- numbers and dates in the file's format --------------------------------------------------

_NUMBER_PATTERNS = {
    # one group of three digits after one separator: 1,234 or 1.234 reads differently in each
    "ambiguous": r"[-+]?[1-9]\d{0,2}[.,]\d{3}",
    ".": r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?|[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?",
    ",": r"[-+]?\d+,\d+(?:[eE][-+]?\d+)?|[-+]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d+)?",
    "plain": r"[-+]?\d+(?:[eE][-+]?\d+)?",
}
_ISO_DATE = r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?:[ T]00:00(?::00(?:\.0+)?)?)?"
_DAY_MONTH_DATE = r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})"


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


def _is_date(v: object) -> bool:
    return isinstance(v, (dt.date, np.datetime64))


@dataclass
class _Column:
    """One column's distinct values, each with its kind; rows point at them with ``codes``."""

    name: str
    values: pd.Series  # the column as given (for quoting in errors)
    codes: np.ndarray  # row -> index into uniques; -1 for a missing value
    uniques: np.ndarray
    text: pd.Series  # stripped text of each unique ("" for typed values)
    kinds: np.ndarray  # per unique: blank, typed, invalid, or a format-specific kind

    @classmethod
    def of(cls, name: str, values: pd.Series) -> _Column:
        if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
            values = values.astype(object)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        uniques = np.asarray(uniques, dtype=object)
        is_str = np.fromiter((isinstance(v, str) for v in uniques), bool, len(uniques))
        text = pd.Series(np.where(is_str, uniques, ""), dtype=object).str.strip()
        kinds = np.full(len(uniques), "invalid", dtype=object)
        kinds[is_str & (text == "").to_numpy()] = "blank"
        return cls(name, values, codes, uniques, text, kinds)

    def row_kinds(self) -> np.ndarray:
        return np.where(self.codes < 0, "blank", self.kinds[self.codes])

    def _mark(self, patterns: dict[str, str]) -> None:
        for kind, pattern in patterns.items():
            todo = self.kinds == "invalid"
            if not todo.any():
                break
            hit = self.text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool) & todo
            self.kinds[hit] = kind


def _number_column(name: str, values: pd.Series) -> _Column:
    col = _Column.of(name, values)
    typed = np.fromiter((_is_number(v) for v in col.uniques), bool, len(col.uniques))
    col.kinds[typed] = "typed"
    col._mark(_NUMBER_PATTERNS)
    return col


def _number_values(col: _Column, decimal: str) -> np.ndarray:
    """Per row: the number in the given format; NaN where the value does not read as one."""
    out = np.full(len(col.uniques), np.nan)
    typed = col.kinds == "typed"
    out[typed] = [float(v) for v in col.uniques[typed]]
    ok = np.isin(col.kinds, ["ambiguous", "plain", decimal])
    if ok.any():
        thousands = "," if decimal == "." else "."
        s = col.text[ok].str.replace(thousands, "", regex=False)
        s = s.str.replace(decimal, ".", regex=False)
        out[ok] = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    return np.where(col.codes < 0, np.nan, out[col.codes])


def _date_column(name: str, values: pd.Series) -> tuple[_Column, pd.DataFrame]:
    col = _Column.of(name, values)
    typed = np.fromiter((_is_date(v) for v in col.uniques), bool, len(col.uniques))
    col.kinds[typed] = "typed"
    iso = col.text.str.extract(f"^{_ISO_DATE}$")
    dm = col.text.str.extract(f"^{_DAY_MONTH_DATE}$")
    todo = col.kinds == "invalid"
    is_iso = iso[0].notna().to_numpy() & todo
    is_dm = dm[0].notna().to_numpy() & todo
    col.kinds[is_iso] = "iso"
    a = pd.to_numeric(dm[0], errors="coerce").to_numpy()
    b = pd.to_numeric(dm[2], errors="coerce").to_numpy()
    with np.errstate(invalid="ignore"):
        col.kinds[is_dm & (a > 12) & (b <= 12)] = "dmy"
        col.kinds[is_dm & (b > 12) & (a <= 12)] = "mdy"
        col.kinds[is_dm & (a <= 12) & (b <= 12) & (a != b)] = "ambiguous"
        col.kinds[is_dm & (a <= 12) & (a == b)] = "same"
    parts = pd.DataFrame(
        {
            "iso_y": iso[0],
            "iso_m": iso[2],
            "iso_d": iso[3],
            "a": dm[0],
            "b": dm[2],
            "y": dm[3],
        }
    ).apply(pd.to_numeric, errors="coerce")
    return col, parts


def _date_values(col: _Column, parts: pd.DataFrame, order: str) -> np.ndarray:
    """Per row: the date (datetime64[ns]) in the given order; NaT where it does not read."""
    n = len(col.uniques)
    year = np.full(n, np.nan)
    month = np.full(n, np.nan)
    day = np.full(n, np.nan)
    iso = col.kinds == "iso"
    year[iso], month[iso], day[iso] = (parts.loc[iso, c] for c in ("iso_y", "iso_m", "iso_d"))
    if order in ("dmy", "mdy"):
        dm = np.isin(col.kinds, ["ambiguous", "same", order])
        first, second = ("a", "b") if order == "dmy" else ("b", "a")
        year[dm], month[dm], day[dm] = (parts.loc[dm, c] for c in ("y", second, first))
    out = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce"
    ).to_numpy()
    typed = col.kinds == "typed"
    if typed.any():
        out[typed] = pd.to_datetime(list(col.uniques[typed])).normalize().to_numpy()
    return np.where(col.codes < 0, np.datetime64("NaT"), out[col.codes])


def _lines_text(lines: np.ndarray, limit: int = 5) -> str:
    """'line 3 is' or 'lines 3, 4 and 10 more are'."""
    if len(lines) == 1:
        return f"line {int(lines[0])} is"
    shown = ", ".join(str(int(x)) for x in lines[:limit])
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"lines {shown}{more} are"


def _decide(
    columns: list[_Column],
    lines: np.ndarray,
    options: dict[str, str],
    chosen: str | None,
    ambiguous_reading: str,
    what: str,
    source: str,
) -> str | None:
    """The option the file's values settle (``chosen`` if given); raises ``FormatError`` naming
    the rows when values contradict each other, or when some are ambiguous and none settles."""
    if chosen is not None:
        return chosen
    rows = {o: [(c, np.flatnonzero(c.row_kinds() == o)) for c in columns] for o in options}
    count = {o: sum(len(r) for _, r in rows[o]) for o in options}
    present = [o for o in options if count[o]]
    errors: list[RowError] = []
    if len(present) == 2:
        a, b = sorted(present, key=lambda o: count[o])
        named = present if count[a] == count[b] else [a]
        for o in named:
            other = b if o == a else a
            other_lines = np.sort(np.concatenate([lines[r] for _, r in rows[other]]))
            for c, r in rows[o]:
                for i in r[:MAX_ERRORS_REPORTED]:
                    errors.append(
                        RowError(
                            int(lines[i]),
                            c.name,
                            f"{c.values.iloc[i]!r} is written {options[o]}, but "
                            f"{_lines_text(other_lines)} written {options[other]}; "
                            f"choose the {what}",
                        )
                    )
        raise FormatError(sorted(errors, key=lambda e: e.line or 0)[:MAX_ERRORS_REPORTED], source)
    if present:
        return present[0]
    for c in columns:
        for i in np.flatnonzero(c.row_kinds() == "ambiguous")[:MAX_ERRORS_REPORTED]:
            errors.append(
                RowError(
                    int(lines[i]),
                    c.name,
                    f"{c.values.iloc[i]!r} {ambiguous_reading}; no value in the file settles "
                    f"the {what}: choose it",
                )
            )
    if errors:
        raise FormatError(sorted(errors, key=lambda e: e.line or 0)[:MAX_ERRORS_REPORTED], source)
    return None


@dataclass
class _Parsed:
    numbers: list[_Column]
    dates: _Column | None
    date_parts: pd.DataFrame | None
    fmt: FileFormat


def _parse(df: pd.DataFrame, lines: np.ndarray, fmt: FileFormat, source: str) -> _Parsed:
    """Classify the number and date columns and settle the format; a ``FormatError`` names the
    rows of both the numbers and the dates that leave it open."""
    problems: list[RowError] = []
    numbers = [_number_column(c, df[c]) for c in ("price", "quantity") if c in df.columns]
    decimal = None
    try:
        decimal = _decide(
            numbers,
            lines,
            {".": "with a decimal point", ",": "with a decimal comma"},
            fmt.decimal,
            "could be read with a decimal point or a decimal comma (1,234 is 1234 or 1.234)",
            "decimal separator",
            source,
        )
    except FormatError as exc:
        problems += exc.errors
    dates, parts, order = None, None, fmt.date_order
    if "date" in df.columns:
        dates, parts = _date_column("date", df["date"])
        try:
            order = _decide(
                [dates],
                lines,
                {"dmy": "day first", "mdy": "month first"},
                fmt.date_order,
                "could be day/month or month/day",
                "date order",
                source,
            )
        except FormatError as exc:
            problems += exc.errors
        if order is None:
            order = "dmy" if np.isin(dates.kinds, ["same"]).any() else "ymd"
    if problems:
        raise FormatError(sorted(problems, key=lambda e: e.line or 0)[:MAX_ERRORS_REPORTED], source)
    return _Parsed(numbers, dates, parts, FileFormat(decimal or ".", order or "ymd"))


def resolve_format(
    df: pd.DataFrame, fmt: FileFormat | None = None, source: str = "input"
) -> FileFormat:
    """The format of a price table: what ``fmt`` fixes, the rest decided from its values
    (raises ``FormatError`` naming the rows when they are ambiguous or contradict)."""
    lines = df[LINE].to_numpy() if LINE in df.columns else np.arange(2, len(df) + 2)
    return _parse(df, lines, fmt or FileFormat(), source).fmt


def _not_fitting(kind: str, fmt: FileFormat, field: str) -> bool:
    """A well-formed value that the (chosen) format cannot read: 12,5 with a decimal point,
    25/12/2024 with day first, any day/month date with year-month-day."""
    if field == "date":
        if kind not in ("dmy", "mdy", "ambiguous", "same"):
            return False
        return fmt.date_order == "ymd" or (kind in ("dmy", "mdy") and kind != fmt.date_order)
    return kind in DECIMALS and kind != fmt.decimal


MAX_DAYS_AHEAD = 7  # a supplier's price list may be announced for next week, not further


def validate_prices(
    df: pd.DataFrame,
    source: str = "input",
    max_errors: int | None = MAX_ERRORS_REPORTED,
    fmt: FileFormat | None = None,
) -> pd.DataFrame:
    """Check a price table and return it typed (date as ``datetime.date``, price as float).

    Text values are read in the file's format (``fmt``, the rest decided from the values);
    typed values (Excel cells, JSON numbers, dates) are taken as they are. Rows are numbered as
    lines of a CSV file with a header (the first data row is line 2) unless the table has a
    ``_line`` column, which is kept.
    """
    errors: list[RowError] = []
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ImportValidationError(
            [RowError(1, c, "required column is missing") for c in missing], source
        )
    if len(df) == 0:
        raise ImportValidationError([RowError(None, None, "no data rows (only a header)")], source)

    keep = [c for c in (*REQUIRED, *OPTIONAL) if c in df.columns]
    out = df[keep].copy()
    lines = df[LINE].to_numpy() if LINE in df.columns else np.arange(2, len(out) + 2)
    parsed = _parse(out, lines, fmt or FileFormat(), source)
    fmt = parsed.fmt

    out["sku"] = out["sku"].astype(str).str.strip()
    for i in np.flatnonzero((out["sku"] == "").to_numpy()):
        errors.append(RowError(int(lines[i]), "sku", "is blank"))
    errors += _case_conflicts(out["sku"], lines)

    assert parsed.dates is not None and parsed.date_parts is not None
    dates = _date_values(parsed.dates, parsed.date_parts, fmt.date_order or "ymd")
    kinds = parsed.dates.row_kinds()
    for i in np.flatnonzero(np.isnat(dates)):
        raw = out["date"].iloc[i]
        if kinds[i] == "blank":
            msg = "is blank"
        elif _not_fitting(kinds[i], fmt, "date"):
            msg = f"{raw!r} is not a date in the chosen order ({DATE_ORDERS[fmt.date_order or 'ymd']})"
        else:
            msg = f"{raw!r} is not a date (YYYY-MM-DD, DD/MM/YYYY or MM/DD/YYYY)"
        errors.append(RowError(int(lines[i]), "date", msg))
    # A price is dated when it was quoted: one far ahead of today is a typo (2099 for 2025),
    # and stored it became the company's newest day, every product's forecast starting there
    latest = np.datetime64(dt.date.today() + dt.timedelta(days=MAX_DAYS_AHEAD), "D")
    for i in np.flatnonzero(~np.isnat(dates) & (dates.astype("datetime64[D]") > latest)):
        errors.append(
            RowError(
                int(lines[i]),
                "date",
                f"{out['date'].iloc[i]!r} is more than {MAX_DAYS_AHEAD} days after today "
                f"({dt.date.today():%Y-%m-%d}); prices are dated when quoted",
            )
        )

    numbers: dict[str, np.ndarray] = {}
    for col in parsed.numbers:
        vals = _number_values(col, fmt.decimal or ".")
        kinds = col.row_kinds()
        if col.name == "price":
            bad = ~np.isfinite(vals) | (vals <= 0)
        else:  # quantity: blank allowed
            bad = (kinds != "blank") & (~np.isfinite(vals) | (vals < 0))
        for i in np.flatnonzero(bad):
            raw = col.values.iloc[i]
            if kinds[i] == "blank":
                msg = "is blank"
            elif _not_fitting(kinds[i], fmt, col.name):
                msg = f"{raw!r} does not fit the chosen format ({DECIMALS[fmt.decimal or '.']})"
            elif np.isnan(vals[i]):
                msg = f"{raw!r} is not a number"
            elif col.name == "price":
                msg = f"{raw!r} must be a positive finite number"
            else:
                msg = f"{raw!r} is not a quantity >= 0"
            errors.append(RowError(int(lines[i]), col.name, msg))
        numbers[col.name] = vals

    # every kind of error in one report: a bad price on one line no longer hides a currency
    # or a conflicting duplicate further down (the file had to be sent once per kind)
    out["date"] = pd.Series(dates).dt.date.to_numpy()
    for col_name, vals in numbers.items():
        out[col_name] = vals
    for text_col in ("name", "supplier", "currency", "category", "unit"):
        if text_col in out.columns:
            out[text_col] = out[text_col].astype(str).str.strip()
    if "currency" in out.columns:
        out["currency"] = out["currency"].str.upper().replace("", "USD")
        badc = ~out["currency"].str.fullmatch(r"[A-Z]{3}")
        for i in np.flatnonzero(badc.to_numpy()):
            errors.append(RowError(int(lines[i]), "currency", "must be a 3-letter ISO code"))
    if LINE in df.columns:
        out[LINE] = lines

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
        raise ImportValidationError(
            sorted(errors, key=lambda e: e.line or 0)[:max_errors], source, total=len(errors)
        )
    return out.reset_index(drop=True)


def _case_conflicts(skus: pd.Series, lines: np.ndarray) -> list[RowError]:
    """Rows whose SKU differs from an earlier row's only in case or accents (see ``sku_key``)."""
    uniques = pd.unique(skus)
    keys = pd.Series([sku_key(s) for s in uniques])
    if keys.nunique() == len(uniques):
        return []
    first = dict(zip(keys[::-1], uniques[::-1], strict=True))  # first spelling of each key
    spelled = dict(zip(uniques, keys, strict=True))
    errors = []
    for i, sku in enumerate(skus):
        if sku and first[spelled[sku]] != sku:
            where = int(lines[int(np.flatnonzero((skus == first[spelled[sku]]).to_numpy())[0])])
            errors.append(
                RowError(
                    int(lines[i]),
                    "sku",
                    f"{sku!r} differs only in case or accents from {first[spelled[sku]]!r} "
                    f"(line {where}); they would be one product",
                )
            )
            if len(errors) >= MAX_ERRORS_REPORTED:
                break
    return errors


LENIENT_EXAMPLES = 3  # rows named per kind of row left out or chosen by ``read_lenient``


@dataclass(frozen=True)
class LenientRead:
    """A file read for analysis, and what the reading left out or chose: the caller says it, so
    that a backtest never runs quietly on part of a file."""

    frame: pd.DataFrame
    label: str  # the file, as named to the reader
    rows: int  # data rows in the file
    dropped: int  # rows whose sku, date or price does not read
    dropped_examples: tuple[RowError, ...]
    conflicts: int  # (sku, date) given more than one price: the last row's is kept
    conflict_examples: tuple[RowError, ...]
    # prices far off the product's own around them (a typo of a thousand times), kept as read
    outliers: int = 0
    outlier_examples: tuple[RowError, ...] = ()
    outlier_factor: float = 0.0

    def warnings(self) -> list[str]:
        """One sentence per kind of row left out or chosen, naming the first few rows."""
        out = []
        if self.dropped:
            named = "; ".join(str(e) for e in self.dropped_examples)
            out.append(
                f"{self.label}: {self.dropped:,} of {self.rows:,} rows left out, their sku, date or "
                f"price does not read ({named})"
            )
        if self.conflicts:
            named = "; ".join(str(e) for e in self.conflict_examples)
            which = (
                "1 product and date has"
                if self.conflicts == 1
                else f"{self.conflicts:,} products and dates have"
            )
            out.append(
                f"{self.label}: {which} more than one price, the last row's is kept ({named})"
            )
        if self.outliers:
            named = "; ".join(str(e) for e in self.outlier_examples)
            which = "1 price is" if self.outliers == 1 else f"{self.outliers:,} prices are"
            out.append(
                f"{self.label}: {which} more than {self.outlier_factor:g} "
                f"times off the median of their product's {OUTLIER_ROWS} rows around them, kept "
                f"as read ({named})"
            )
        return out

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "dropped": self.dropped,
            "conflicting_dates": self.conflicts,
            "outliers": self.outliers,
        }


OUTLIER_ROWS = 61  # a product's prices around one, whose median it is compared with


def _outliers(out: pd.DataFrame, factor: float | None) -> tuple[int, tuple[RowError, ...]]:
    """Rows of ``out`` (sku, date, price, line; one per sku and date) whose price is more than
    ``factor`` times above or below the median of its product's ``OUTLIER_ROWS`` rows around
    it, in date order: a whole-history median would flag a price that rose for ten years."""
    if not factor or out.empty:
        return 0, ()
    rows = out.sort_values(["sku", "date"], kind="stable")
    rolling = rows.groupby("sku", sort=False)["price"].rolling(
        OUTLIER_ROWS, center=True, min_periods=1
    )
    median = rolling.median().reset_index(level=0, drop=True).reindex(rows.index)
    price, m = rows["price"].to_numpy(float), median.to_numpy(float)
    # a product whose prices reach zero or below (electricity, WTI in April 2020) has no ratio
    # to speak of: 0.30 beside 5.14 is an ordinary day there
    signed = (rows.groupby("sku", sort=False)["price"].transform("min") > 0).to_numpy() & (m > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(signed, np.maximum(price / m, m / price), 1.0)
    far = np.flatnonzero(ratio > factor)
    examples = tuple(
        RowError(
            int(rows["line"].iloc[i]),
            "price",
            f"{price[i]:g} is {ratio[i]:.1f}x {'above' if price[i] > m[i] else 'below'} the "
            f"median {m[i]:g} of {rows['sku'].iloc[i]} around "
            f"{pd.Timestamp(rows['date'].iloc[i]):%Y-%m-%d}",
        )
        for i in far[:LENIENT_EXAMPLES]
    )
    return len(far), examples


def read_lenient(
    path: str | Path, fmt: FileFormat | None = None, outlier_factor: float | None = None
) -> LenientRead:
    """Read ``sku,date,price`` (and ``category`` where the file has it) for analysis (backtests):
    rows whose price or date does not read are left out, negative prices are kept (they happen:
    WTI on 2020-04-20), and of rows giving one product and date different prices the last is
    kept; what was left out or chosen is counted and its first rows named. Numbers and dates are
    read as a price import reads them (decimal comma or point, day/month or month/day dates,
    decided from the file's values unless ``fmt`` says; a ``FormatError`` names the rows that
    leave it open). ``outlier_factor``: count and name the prices more than that many times off
    their product's around them (``_outliers``), keeping them."""
    label = str(path)
    df = _csv_strings(path, label, REQUIRED)
    parsed = _parse(df[["price", "date"]], np.arange(2, len(df) + 2), fmt or FileFormat(), label)
    assert parsed.dates is not None and parsed.date_parts is not None
    price = _number_values(parsed.numbers[0], parsed.fmt.decimal or ".")
    date = _date_values(parsed.dates, parsed.date_parts, parsed.fmt.date_order or "ymd")
    sku = df["sku"].str.strip()
    out = pd.DataFrame({"sku": sku, "date": date, "price": price})
    usable = (out["date"].notna() & np.isfinite(out["price"]) & (sku != "")).to_numpy()
    if not usable.any():
        first = _unusable(df, out, 0)
        why = f"{first.message} (no row of the file is usable)"
        raise ImportValidationError([RowError(first.line, first.field, why)], label)
    dropped = [_unusable(df, out, i) for i in np.flatnonzero(~usable)[:LENIENT_EXAMPLES]]
    if "category" in df.columns:
        out["category"] = df["category"].str.strip().replace("", None)
    out = out.assign(line=np.arange(2, len(df) + 2))[usable]
    key = out[["sku", "date"]]
    repeated = out[key.duplicated(keep=False).to_numpy()]
    prices = repeated.groupby(["sku", "date"], sort=False)["price"]
    differ = prices.transform("nunique").to_numpy() > 1
    conflicts = repeated[differ].groupby(["sku", "date"], sort=False)["line"].agg(list)
    examples = tuple(
        RowError(
            int(lines[-1]),
            "price",
            f"{sku} on {pd.Timestamp(date):%Y-%m-%d} is also priced on line"
            f"{'s' if len(lines) > 2 else ''} {', '.join(str(x) for x in lines[:-1])}",
        )
        for (sku, date), lines in conflicts.head(LENIENT_EXAMPLES).items()
    )
    out = out[~key.duplicated(keep="last").to_numpy()]
    outliers, outlier_examples = _outliers(out, outlier_factor)
    return LenientRead(
        out.drop(columns="line").reset_index(drop=True),
        label=label,
        rows=len(df),
        dropped=int((~usable).sum()),
        dropped_examples=tuple(dropped),
        conflicts=len(conflicts),
        conflict_examples=examples,
        outliers=outliers,
        outlier_examples=outlier_examples,
        outlier_factor=outlier_factor or 0.0,
    )


def _unusable(raw: pd.DataFrame, read: pd.DataFrame, i: int) -> RowError:
    """Why row ``i`` (0-based, of the data rows) does not read."""
    if read["sku"].iloc[i] == "":
        return RowError(i + 2, "sku", "is blank")
    if pd.isna(read["date"].iloc[i]):
        value = raw["date"].iloc[i]
        return RowError(i + 2, "date", f"{value!r} is not a date" if value else "is blank")
    value = raw["price"].iloc[i]
    return RowError(i + 2, "price", f"{value!r} is not a number" if value else "is blank")


def apply_mapping(
    df: pd.DataFrame,
    mapping: dict[str, str],
    fmt: FileFormat | None = None,
    source: str = "upload",
    validate: bool = True,
) -> pd.DataFrame:
    """Rename the user's columns to ours (``mapping``: our column -> the file's column), number
    the rows as lines of the file, then validate in the file's format (see ``validate_prices``).
    With ``validate=False`` the renamed table is returned, for ``split_valid``."""
    out = pd.DataFrame({ours: df[theirs] for ours, theirs in mapping.items() if theirs})
    out[LINE] = np.arange(2, len(out) + 2)
    return validate_prices(out, source=source, fmt=fmt) if validate else out


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
        raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], label, total=len(errors))
    return pd.DataFrame({"sku": df["sku"], "on_hand": on_hand, "lead_time_days": lead.astype(int)})


def read_catalog_csv(
    src: str | Path | IO[bytes] | bytes, source: str | None = None
) -> pd.DataFrame:
    """``sku`` plus any of name, supplier, category, unit, currency, and the supplier's
    ``working_days`` (``Mon-Fri``, ``Mon,Tue,Sat``; see ``procurement.workdays``): creates or
    updates products and sets their suppliers' working days. A row with working days names its
    supplier, and one supplier has the same days on every row that gives them."""
    label = _label(src, source)
    df = _csv_strings(src, label, ("sku",))
    df["sku"] = df["sku"].str.strip()
    errors = [
        RowError(int(i) + 2, "sku", "is blank")
        for i in np.flatnonzero((df["sku"] == "").to_numpy())
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
    if "working_days" in df.columns:
        df["working_days"], day_errors = _working_days(df)
        errors += day_errors
        errors.sort(key=lambda e: e.line or 0)
    if errors:
        raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], label, total=len(errors))
    keep = [
        c
        for c in ("sku", "name", "supplier", "category", "unit", "currency", "working_days")
        if c in df.columns
    ]
    return df[keep]


def _working_days(df: pd.DataFrame) -> tuple[pd.Series, list[RowError]]:
    """The catalog's ``working_days`` in canonical form (blank: left as it is), and the rows
    whose value is not a calendar, has no supplier, or contradicts an earlier row's."""
    out, errors = [], []
    suppliers = (
        df["supplier"].str.strip() if "supplier" in df.columns else pd.Series("", index=df.index)
    )
    first: dict[str, tuple[str, int]] = {}
    for i, (raw, sup) in enumerate(zip(df["working_days"], suppliers, strict=True)):
        line, value = i + 2, str(raw).strip()
        if not value:
            out.append("")
            continue
        try:
            days = workdays.normalized(value)
        except ValueError as exc:
            errors.append(RowError(line, "working_days", str(exc)))
            out.append("")
            continue
        out.append(days)
        if not sup:
            errors.append(
                RowError(line, "working_days", "needs the supplier's name in the supplier column")
            )
        elif sup in first and first[sup][0] != days:
            errors.append(
                RowError(
                    line,
                    "working_days",
                    f"{value!r} for {sup}, but line {first[sup][1]} gives {first[sup][0]}",
                )
            )
        else:
            first.setdefault(sup, (days, line))
    return pd.Series(out, index=df.index), errors


def split_valid(
    df: pd.DataFrame, source: str = "input", fmt: FileFormat | None = None
) -> tuple[pd.DataFrame, list[RowError]]:
    """The rows that pass validation, and every error of the rows that do not, for a buyer who
    chooses to drop the bad rows. Conflicting duplicates are dropped on all their lines.

    The format is decided on the whole table first (a ``FormatError`` is raised, not dropped),
    so dropping rows never changes how the remaining ones are read."""
    rows = df.reset_index(drop=True)
    if LINE not in rows.columns:
        rows[LINE] = np.arange(2, len(rows) + 2)
    fixed = resolve_format(rows, fmt, source)
    errors: list[RowError] = []
    # value errors are reported before duplicate conflicts are looked for: a few passes at most
    for _ in range(3):
        try:
            clean = validate_prices(rows, source, max_errors=None, fmt=fixed)
            return clean, errors
        except ImportValidationError as exc:
            if any(e.line is None or e.line == 1 for e in exc.errors):
                raise ImportValidationError(exc.errors[:MAX_ERRORS_REPORTED], source) from None
            errors += exc.errors
            bad = {e.line for e in exc.errors}
            rows = rows[~rows[LINE].isin(bad)].reset_index(drop=True)
            if rows.empty:
                raise ImportValidationError(
                    errors[:MAX_ERRORS_REPORTED], source, total=len(errors)
                ) from None
    raise ImportValidationError(errors[:MAX_ERRORS_REPORTED], source, total=len(errors))
