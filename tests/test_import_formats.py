"""The number and date format of a price file is decided from all of its values, the same way on
the Data page (``apply_mapping``) and in the CLI (``import prices``); a file that leaves it open
is refused with the rows named, unless the format is chosen."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from procurement.data.importers import (
    FileFormat,
    FormatError,
    ImportValidationError,
    apply_mapping,
    read_price_csv,
    read_table,
    split_valid,
)

MAP = {"sku": "sku", "date": "date", "price": "price"}


def _page(content: bytes, fmt: FileFormat | None = None, name: str = "f.csv") -> pd.DataFrame:
    """What the Data page stores for an uploaded file."""
    return apply_mapping(read_table(content, name), MAP, fmt, source=name)


def _both(content: bytes, fmt: FileFormat | None = None) -> list[pd.DataFrame]:
    """The Data page's and the CLI's reading of the same file."""
    return [_page(content, fmt), read_price_csv(content, source="f.csv", fmt=fmt)]


def _messages(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(e) for e in exc.value.errors]


def test_us_thousands_are_read_as_thousands_when_a_value_has_a_decimal_point() -> None:
    """Issue: '1,234', '2,500', '12.50' were stored 1.234, 2.5 and 1250."""
    content = b'sku,date,price\nA,2026-01-01,"1,234"\nB,2026-01-01,"2,500"\nC,2026-01-01,12.50\n'
    for df in _both(content):
        assert df["price"].tolist() == [1234.0, 2500.0, 12.5]


def test_european_thousands_are_read_as_thousands_when_a_value_has_a_decimal_comma() -> None:
    """Issue: 12,5 / 1.234 / 1.500 were stored 125, 1.234 and 1.5."""
    content = b"sku;date;price\nA;2026-01-01;12,5\nB;2026-01-01;1.234\nC;2026-01-01;1.500\n"
    for df in _both(content):
        assert df["price"].tolist() == [12.5, 1234.0, 1500.0]


def test_scientific_notation_is_parsed() -> None:
    for df in _both(b"sku,date,price\nA,2026-01-01,1.5e3\nB,2026-01-01,2E-2\n"):
        assert df["price"].tolist() == [1500.0, 0.02]


@pytest.mark.parametrize("value", ["2x 10.00", "$12.50", "12.50 EUR", "1 234", "12..5", "1,2,3"])
def test_values_with_other_characters_are_refused_not_stripped(value: str) -> None:
    """Issue: '2x 10.00' became 210."""
    content = f'sku,date,price\nA,2026-01-01,1.5\nB,2026-01-01,"{value}"\n'.encode()
    for read in (_page, lambda c: read_price_csv(c, source="f.csv")):
        with pytest.raises(ImportValidationError) as exc:
            read(content)
        assert _messages(exc) == [f"line 3, field 'price': {value!r} is not a number"]


def test_ambiguous_numbers_are_refused_naming_the_rows_until_the_format_is_chosen() -> None:
    content = b'sku,date,price\nA,2026-01-01,7\nB,2026-01-01,"1,234"\nC,2026-01-01,"2,500"\n'
    with pytest.raises(FormatError) as exc:
        _page(content)
    lines = [(e.line, e.field) for e in exc.value.errors]
    assert lines == [(3, "price"), (4, "price")]
    assert "'1,234' could be read with a decimal point or a decimal comma" in _messages(exc)[0]
    assert _page(content, FileFormat(decimal="."))["price"].tolist() == [7.0, 1234.0, 2500.0]
    assert _page(content, FileFormat(decimal=","))["price"].tolist() == [7.0, 1.234, 2.5]


def test_contradicting_numbers_are_refused_naming_the_odd_rows() -> None:
    content = b'sku,date,price\nA,2026-01-01,1.5\nB,2026-01-01,2.25\nC,2026-01-01,"3,5"\n'
    with pytest.raises(FormatError) as exc:
        read_price_csv(content, source="f.csv")
    assert _messages(exc) == [
        "line 4, field 'price': '3,5' is written with a decimal comma, but lines 2, 3 are "
        "written with a decimal point; choose the decimal separator"
    ]


def test_a_value_that_does_not_fit_the_chosen_format_is_a_row_error() -> None:
    content = b'sku,date,price\nA,2026-01-01,1.5\nB,2026-01-01,"3,5"\n'
    with pytest.raises(ImportValidationError) as exc:
        _page(content, FileFormat(decimal="."))
    assert not isinstance(exc.value, FormatError)
    assert _messages(exc) == [
        "line 3, field 'price': '3,5' does not fit the chosen format (decimal point)"
    ]


def test_quantities_count_as_evidence_for_the_decimal_separator() -> None:
    content = b'sku,date,price,quantity\nA,2026-01-01,"1,234","2,5"\n'
    df = read_price_csv(content, source="f.csv")
    assert df["price"].tolist() == [1.234] and df["quantity"].tolist() == [2.5]


def test_us_dates_are_read_month_first_when_one_date_settles_it() -> None:
    """Issue: with 'drop bad rows', 03/04 and 01/02 were kept as day/month, 12/25 dropped."""
    content = b"sku,date,price\nA,03/04/2024,1\nB,01/02/2024,2\nC,12/25/2024,3\n"
    expected = [dt.date(2024, 3, 4), dt.date(2024, 1, 2), dt.date(2024, 12, 25)]
    for df in _both(content):
        assert df["date"].tolist() == expected
    clean, dropped = split_valid(apply_mapping(read_table(content, "f.csv"), MAP, validate=False))
    assert clean["date"].tolist() == expected and dropped == []


def test_dropping_bad_rows_never_drops_rows_that_contradict_the_format() -> None:
    content = b"sku,date,price\nA,03/04/2024,1\nB,25/12/2024,2\nC,12/26/2024,3\nD,12/27/2024,4\n"
    mapped = apply_mapping(read_table(content, "f.csv"), MAP, validate=False)
    with pytest.raises(FormatError) as exc:
        split_valid(mapped)
    assert [e.line for e in exc.value.errors] == [3]
    assert (
        "'25/12/2024' is written day first, but lines 4, 5 are written month first"
        in (_messages(exc)[0])
    )
    # once the order is chosen the odd row is an ordinary bad row that may be dropped
    clean, dropped = split_valid(mapped, fmt=FileFormat(date_order="mdy"))
    assert clean["sku"].tolist() == ["A", "C", "D"] and [e.line for e in dropped] == [3]
    assert clean["date"].iloc[0] == dt.date(2024, 3, 4)


def test_ambiguous_dates_are_refused_until_the_order_is_chosen() -> None:
    content = b"sku,date,price\nA,03/04/2024,1\nB,2024-05-06,2\nC,05/05/2024,3\n"
    with pytest.raises(FormatError) as exc:
        _page(content)
    assert [e.line for e in exc.value.errors] == [2]  # 2024-05-06 and 05/05 read one way only
    df = _page(content, FileFormat(date_order="dmy"))
    assert df["date"].tolist() == [dt.date(2024, 4, 3), dt.date(2024, 5, 6), dt.date(2024, 5, 5)]


def test_numbers_and_dates_that_are_both_open_are_named_together() -> None:
    content = b'sku,date,price\nA,03/04/2024,"1,234"\n'
    with pytest.raises(FormatError) as exc:
        read_price_csv(content, source="f.csv")
    assert {e.field for e in exc.value.errors} == {"date", "price"}


def test_excel_date_and_number_cells_are_accepted(tmp_path: Path) -> None:
    """Issue: normal Excel date cells were always rejected."""
    path = tmp_path / "p.xlsx"
    pd.DataFrame(
        {
            "sku": ["A", "B"],
            "date": [dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 3)],
            "price": [1234.5, 7],
        }
    ).to_excel(path, index=False)
    df = _page(path.read_bytes(), name="p.xlsx")
    assert df["date"].tolist() == [dt.date(2026, 1, 2), dt.date(2026, 1, 3)]
    assert df["price"].tolist() == [1234.5, 7.0]


def test_an_excel_zip_bomb_is_refused_before_openpyxl_opens_it() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"\x00" * 30_000_000)
    raw = buf.getvalue()
    assert len(raw) < 100_000
    with pytest.raises(ImportValidationError, match="unpacks to 30 MB, more than the limit of 20"):
        read_table(raw, "bomb.xlsx", max_bytes=10**6, max_unpacked_bytes=20_000_000)


def test_a_file_above_the_upload_limit_is_refused() -> None:
    with pytest.raises(ImportValidationError, match="more than the limit of 1 MB"):
        read_table(b"sku,date,price\n" + b"A,2026-01-01,1\n" * 200_000, "big.csv", max_bytes=10**6)


def test_skus_differing_only_in_case_within_a_file_are_refused() -> None:
    content = b"sku,date,price\nabc,2026-01-01,1\nABC,2026-01-02,1\nAbc,2026-01-03,1\n"
    with pytest.raises(ImportValidationError) as exc:
        read_price_csv(content, source="f.csv")
    assert _messages(exc)[0] == (
        "line 3, field 'sku': 'ABC' differs only in case or accents from 'abc' (line 2); "
        "they would be one product"
    )
    assert [e.line for e in exc.value.errors] == [3, 4]


# --- the CLI reads the same formats -----------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    from procurement import cli as cli_module
    from procurement.config import get_settings
    from procurement.db import get_engine

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    get_settings.cache_clear()
    get_engine.cache_clear()

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_module.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def _stored(tenant: str = "demo") -> list[tuple[str, dt.date, float]]:
    from procurement.db import catalog, get_engine, history, open_session

    with open_session(get_engine()) as s:
        ten = catalog.get_tenant(s, tenant)
        df = history.load_prices(s, ten.id)
    return [(r.sku, r.date.date(), r.price) for r in df.itertuples()]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"sku;date;price\nA;2024-12-02;1.234,50\n", [("A", dt.date(2024, 12, 2), 1234.5)]),
        (b'sku,date,price\nA,2024-12-02,"1,234.50"\n', [("A", dt.date(2024, 12, 2), 1234.5)]),
        (
            b"sku,date,price\nA,03/04/2024,2\nA,12/25/2024,3\n",
            [("A", dt.date(2024, 3, 4), 2.0), ("A", dt.date(2024, 12, 25), 3.0)],
        ),
    ],
)
def test_cli_stores_a_file_whose_values_settle_the_format_without_options(
    cli, tmp_path: Path, content: bytes, expected
) -> None:
    f = tmp_path / "p.csv"
    f.write_bytes(content)
    code, _, err = cli("import", "prices", str(f))
    assert code == 0, err
    assert _stored() == expected


def test_cli_refuses_an_ambiguous_file_naming_the_rows_and_options_settle_it(
    cli, tmp_path: Path
) -> None:
    f = tmp_path / "p.csv"
    f.write_bytes(b'sku,date,price\nA,03/04/2024,"1,234"\nA,05/06/2024,"2,000"\n')
    code, _, err = cli("import", "prices", str(f))
    assert code == 2
    assert "line 2, field 'date': '03/04/2024' could be day/month or month/day" in err
    assert "line 2, field 'price': '1,234' could be read" in err
    assert "--decimal comma|dot or --date-order dmy|mdy|ymd" in err
    code, _, err = cli("import", "prices", str(f), "--decimal", "dot", "--date-order", "dmy")
    assert code == 0, err
    assert _stored() == [("A", dt.date(2024, 4, 3), 1234.0), ("A", dt.date(2024, 6, 5), 2000.0)]


def test_cli_import_is_recorded_with_who_and_can_be_undone(cli, tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("sku,date,price\nA,2024-01-01,10\nA,2024-01-02,11\n")
    assert cli("import", "prices", str(f))[0] == 0
    f.write_text("sku,date,price\nA,2024-01-02,12\nA,2024-01-03,13\n")
    code, out, _ = cli("import", "prices", str(f))
    assert code == 0 and "(import 2;" in out
    code, out, _ = cli("import", "runs")
    assert code == 0 and "cli:" in out
    code, out, err = cli("import", "undo", "2")
    assert code == 0, err
    assert "1 added prices removed, 1 previous prices restored" in out
    assert _stored() == [("A", dt.date(2024, 1, 1), 10.0), ("A", dt.date(2024, 1, 2), 11.0)]
    code, _, err = cli("import", "undo", "2")
    assert code == 2 and "already undone" in err
