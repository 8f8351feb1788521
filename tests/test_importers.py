"""Validation of price files (every bad input names the line and the field) and storing them:
who imported, undo, outliers, SKU identity, concurrent imports."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pytest
from sqlalchemy import func, select

from procurement import ingest
from procurement.auth import PermissionDenied, Principal
from procurement.data.importers import MAX_DAYS_AHEAD, ImportValidationError, read_price_csv
from procurement.db import catalog, history, open_session
from procurement.db.models import PriceObservation, Product

HEADER = b"sku,date,price\n"


def _errors(content: bytes) -> list[str]:
    with pytest.raises(ImportValidationError) as exc:
        read_price_csv(content, source="f.csv")
    return [str(e) for e in exc.value.errors]


def test_valid_file_is_typed_and_keeps_optional_columns() -> None:
    df = read_price_csv(
        b"sku,date,price,name,supplier,currency,quantity\nA,2026-01-02,1.5,Bolt,Acme,eur,3\n"
    )
    assert df.loc[0, "price"] == 1.5
    assert str(df.loc[0, "date"]) == "2026-01-02"
    assert df.loc[0, "currency"] == "EUR"
    assert df.loc[0, "quantity"] == 3


def test_missing_column_is_named() -> None:
    errs = _errors(b"sku,price\nA,1\n")
    assert errs == ["line 1, field 'date': required column is missing"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (b"A,2026-02-30,1.0", "date"),  # impossible date
        (b"A,25/13/2026,1.0", "date"),  # no month 13 in either order
        (b"A,25/11/26,1.0", "date"),  # two-digit year
        (b"A,yesterday,1.0", "date"),
        (b"A,2026-01-01,-1", "price"),
        (b"A,2026-01-01,0", "price"),
        (b"A,2026-01-01,abc", "price"),
        (b"A,2026-01-01,inf", "price"),
        (b"A,2026-01-01,nan", "price"),
        (b"A,2026-01-01,", "price"),
        (b" ,2026-01-01,1.0", "sku"),
    ],
)
def test_bad_value_names_line_and_field(row: bytes, field: str) -> None:
    errs = _errors(HEADER + b"A,2026-01-01,1.0\n" + row + b"\n")
    assert errs[0].startswith(f"line 3, field '{field}'")


def test_a_date_far_ahead_of_today_is_refused_naming_line_and_field() -> None:
    today = dt.date.today()
    soon = today + dt.timedelta(days=MAX_DAYS_AHEAD)  # a price list for next week: kept
    typo = today + dt.timedelta(days=MAX_DAYS_AHEAD + 1)
    ok = read_price_csv(HEADER + f"A,{today},1.0\nA,{soon},1.1\n".encode())
    assert len(ok) == 2
    errs = _errors(HEADER + f"A,{today},1.0\nB,2099-01-01,2.0\nC,{typo},3.0\n".encode())
    # stored, 2099 had become the company's newest day and every forecast started there
    assert errs[0].startswith("line 3, field 'date': '2099-01-01' is more than 7 days after")
    assert errs[1].startswith(f"line 4, field 'date': '{typo}' is more than 7 days after")


def test_same_sku_and_date_with_different_prices_is_an_error() -> None:
    errs = _errors(HEADER + b"A,2026-01-01,1.0\nB,2026-01-01,2.0\nA,2026-01-01,1.5\n")
    assert "lines 2, 4" in errs[0] and "different prices" in errs[0]


def test_every_kind_of_error_is_reported_at_once_in_line_order() -> None:
    errs = _errors(
        b"sku,date,price,currency\n"
        b"A,2026-01-01,1.0,USD\n"
        b"A,2026-01-01,1.5,USD\n"  # the same day at another price
        b"B,2026-01-02,abc,USD\n"
        b"C,2026-01-02,2.0,DOLLARS\n"
    )
    # the text price had hidden the duplicate and the currency until it was mended
    assert [e.split(":")[0] for e in errs] == [
        "line 3, field 'price'",
        "line 4, field 'price'",
        "line 5, field 'currency'",
    ]
    assert "appears on lines 2, 3 with different prices" in errs[0]
    assert "'abc' is not a number" in errs[1]


def test_exact_duplicates_are_collapsed() -> None:
    df = read_price_csv(HEADER + b"A,2026-01-01,1.0\nA,2026-01-01,1.0\n")
    assert len(df) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (HEADER, "only a header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        ("sku,date,price\nÄ,2026-01-01,1\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unusable_files_are_rejected(content: bytes, message: str) -> None:
    assert message in _errors(content)[0]


def test_all_problems_are_reported_not_only_the_first() -> None:
    errs = _errors(HEADER + b"A,2026-01-01,-1\nB,bad,2\nC,2026-01-01,x\n")
    assert len(errs) == 3


def test_semicolon_csv_with_decimal_comma_and_brazilian_dates_maps_to_prices() -> None:
    from procurement.data.importers import apply_mapping, read_table

    raw = read_table(b"codigo;data;preco\nA;25/11/2026;1.234,56\nB;26/11/2026;12,5\n", "precos.csv")
    assert list(raw.columns) == ["codigo", "data", "preco"]
    df = apply_mapping(raw, {"sku": "codigo", "date": "data", "price": "preco"})
    assert df["price"].tolist() == [1234.56, 12.5]
    assert [str(d) for d in df["date"]] == ["2026-11-25", "2026-11-26"]


def test_mapping_keeps_bad_values_for_line_numbered_errors() -> None:
    from procurement.data.importers import apply_mapping, read_table

    raw = read_table(b"code,day,cost\nA,31/02/2026,1\n", "x.csv")
    with pytest.raises(ImportValidationError, match="line 2, field 'date': '31/02/2026'"):
        apply_mapping(raw, {"sku": "code", "date": "day", "price": "cost"})


def test_excel_file_is_read(tmp_path) -> None:
    import pandas as pd

    from procurement.data.importers import apply_mapping, read_table

    path = tmp_path / "p.xlsx"
    pd.DataFrame({"sku": ["A"], "date": ["2026-01-02"], "price": [3.5]}).to_excel(path, index=False)
    df = apply_mapping(
        read_table(path.read_bytes(), "p.xlsx"), {"sku": "sku", "date": "date", "price": "price"}
    )
    assert df["price"].tolist() == [3.5]


def test_broken_excel_is_a_clear_error() -> None:
    from procurement.data.importers import read_table

    with pytest.raises(ImportValidationError, match="not a readable Excel file"):
        read_table(b"PK\x03\x04 garbage", "p.xlsx")


def test_a_50_mb_file_with_one_bad_row_at_the_end_is_rejected_whole(tmp_path) -> None:
    import numpy as np
    import pandas as pd

    n = 1_300_000  # about 50 MB
    dates = pd.date_range("2020-01-01", periods=1000).strftime("%Y-%m-%d").to_numpy()
    df = pd.DataFrame(
        {
            "sku": np.char.add("SKU-", (np.arange(n) // 1000).astype(str)),
            "date": np.tile(dates, n // 1000 + 1)[:n],
            "price": np.round(np.random.default_rng(0).uniform(1, 100, n), 2),
            "name": "a product name to make the file realistic",
        }
    )
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    with path.open("a") as f:
        f.write("SKU-last,2026-01-01,-5,bad\n")
    assert path.stat().st_size > 50e6
    with pytest.raises(ImportValidationError, match=f"line {n + 2}, field 'price'"):
        read_price_csv(path)


def test_split_valid_drops_only_bad_rows_including_both_conflicting_duplicates() -> None:
    import pandas as pd

    from procurement.data.importers import split_valid

    df = pd.DataFrame(
        {
            "sku": ["A", "B", "C", "C", "D"],
            "date": ["2026-01-01", "2026-13-01", "2026-01-01", "2026-01-01", "2026-01-02"],
            "price": ["1", "2", "3", "4", "-5"],
        }
    )
    clean, errors = split_valid(df)
    assert clean["sku"].tolist() == ["A"]
    assert sorted({e.line for e in errors}) == [3, 4, 5, 6]


def test_split_valid_refuses_whole_file_problems() -> None:
    import pandas as pd

    from procurement.data.importers import split_valid

    with pytest.raises(ImportValidationError, match="required column"):
        split_valid(pd.DataFrame({"sku": ["A"], "price": ["1"]}))


# --- storing: who imported, undo, outliers, SKU identity, concurrent imports -----------------

BUYER = "buyer-ann"


def _prices(text: str):
    return read_price_csv(("sku,date,price,quantity\n" + text).encode(), source="f.csv")


def _import(db, text: str, **kw) -> ingest.ImportResult:
    return ingest.import_prices(
        db, "acme", _prices(text), "f.csv", Principal.system(), actor_name=BUYER, **kw
    )


def _stored(db) -> list[tuple[str, str, float]]:
    with open_session(db) as s:
        ten = catalog.get_tenant(s, "acme")
        df = history.load_prices(s, ten.id)
    return [(r.sku, str(r.date.date()), r.price) for r in df.itertuples()]


def test_import_is_recorded_with_who_and_undo_restores_the_previous_values(db) -> None:
    first = _import(db, "A,2026-01-01,10,1\nA,2026-01-02,11,2\n")
    second = _import(db, "A,2026-01-02,12,5\nA,2026-01-03,13,\nB,2026-01-03,7,\n")
    assert (second.counts.added, second.counts.updated) == (2, 1)
    with open_session(db) as s:
        log = history.import_log(s, catalog.get_tenant(s, "acme").id)
    assert log["by"].tolist() == [BUYER, BUYER] and log["undoable"].all()

    undo = ingest.undo_import(db, "acme", second.run_id, Principal("ann", "buyer", None))
    assert "2 added prices removed, 1 previous prices restored" in undo.source
    assert _stored(db) == [("A", "2026-01-01", 10.0), ("A", "2026-01-02", 11.0)]
    with open_session(db) as s:
        ten = catalog.get_tenant(s, "acme")
        assert history.load_sales(s, ten.id)["quantity"].tolist() == [1.0, 2.0]
        assert s.scalar(select(func.count()).where(Product.sku == "B")) == 0  # created by it
        log = history.import_log(s, ten.id)
    assert log.loc[log["id"] == second.run_id, "undone_by"].item() == "ann"
    assert log.loc[log["id"] == first.run_id, "undoable"].item()
    with pytest.raises(ValueError, match="already undone"):
        ingest.undo_import(db, "acme", second.run_id, Principal.system())


def test_undo_is_refused_when_a_later_import_changed_the_same_rows(db) -> None:
    first = _import(db, "A,2026-01-01,10,\n")
    _import(db, "A,2026-01-01,11,\n")
    with pytest.raises(ValueError, match=r"changed since .*A on 2026-01-01.*undo the later"):
        ingest.undo_import(db, "acme", first.run_id, Principal.system())
    assert _stored(db) == [("A", "2026-01-01", 11.0)]


def _described(db, sku: str) -> tuple[str | None, str | None, str | None]:
    with open_session(db) as s:
        ten = catalog.get_tenant(s, "acme")
        prods = catalog.load_products(s, ten.id).set_index("sku")
    row = prods.loc[sku]
    return row["name"], row["supplier"], row["currency"]


def _import_described(db, text: str) -> ingest.ImportResult:
    prices = read_price_csv(("sku,date,price,name,supplier,currency\n" + text).encode())
    return ingest.import_prices(db, "acme", prices, "f.csv", Principal.system())


def test_undo_restores_the_name_supplier_and_currency_an_import_changed(db) -> None:
    _import_described(db, "A,2026-01-01,10,Bolt M8,Acme,EUR\nB,2026-01-01,5,Nut,Acme,EUR\n")
    later = _import_described(db, "A,2026-01-02,11,Bolt M8 zinc,Bolt Co,USD\n")
    # said, not silent: a price list that renames a product or moves it to another supplier
    assert later.counts.described == 1 and later.counts.added == 1
    assert _described(db, "A") == ("Bolt M8 zinc", "Bolt Co", "USD")
    undo = ingest.undo_import(db, "acme", later.run_id, Principal.system())
    assert "3 product fields restored" in undo.source
    assert _described(db, "A") == ("Bolt M8", "Acme", "EUR")
    assert _described(db, "B") == ("Nut", "Acme", "EUR")
    assert _stored(db) == [("A", "2026-01-01", 10.0), ("B", "2026-01-01", 5.0)]
    with open_session(db) as s:
        ten = catalog.get_tenant(s, "acme")
        # the supplier the import named first is gone with it; the one in use stays
        assert catalog.list_suppliers(s, ten.id)["supplier"].tolist() == ["Acme"]


def test_undo_is_refused_when_a_later_import_renamed_the_product_again(db) -> None:
    _import_described(db, "A,2026-01-01,10,Bolt,Acme,EUR\n")
    first = _import_described(db, "A,2026-01-02,11,Bolt M8,Acme,EUR\n")
    _import_described(db, "A,2026-01-03,12,Bolt M8 zinc,Acme,EUR\n")
    with pytest.raises(ValueError, match=r"the name of A changed since .*undo the later"):
        ingest.undo_import(db, "acme", first.run_id, Principal.system())
    assert _described(db, "A")[0] == "Bolt M8 zinc"  # nothing half-undone


def test_undo_needs_the_import_permission_in_that_company(db) -> None:
    res = _import(db, "A,2026-01-01,10,\n")
    with pytest.raises(PermissionDenied):
        ingest.undo_import(db, "acme", res.run_id, Principal("v", "viewer", None))
    assert _stored(db) == [("A", "2026-01-01", 10.0)]


def test_a_price_five_times_off_the_recent_median_needs_confirmation(db) -> None:
    _import(db, "".join(f"A,2026-01-{d:02d},{10 + d % 3},\n" for d in range(1, 21)))
    with pytest.raises(ingest.NeedsConfirmation) as exc:
        _import(db, "A,2026-01-21,11,\nA,2026-01-22,1150,\nA,2026-01-23,1.5,\n")
    assert [str(e) for e in exc.value.errors] == [
        "line 3, field 'price': 1150 is 104.5x above the recent median 11 of A; confirm to store it",
        "line 4, field 'price': 1.5 is 7.3x below the recent median 11 of A; confirm to store it",
    ]
    assert len(_stored(db)) == 20  # nothing of that file stored
    res = _import(db, "A,2026-01-21,11,\nA,2026-01-22,1150,\n", confirm_outliers=True)
    assert res.counts.added == 2


def test_a_sku_differing_only_in_case_from_a_stored_one_is_refused_on_both_databases(db) -> None:
    _import(db, "abc,2026-01-01,1,\n")
    with pytest.raises(ImportValidationError) as exc:
        _import(db, "x,2026-01-01,1,\nABC,2026-01-02,1,\n")
    assert str(exc.value.errors[0]) == (
        "line 3, field 'sku': 'ABC' differs only in case or accents from the product 'abc'; "
        "use that spelling"
    )
    with open_session(db) as s:
        assert s.scalar(select(func.count()).select_from(Product)) == 1


def test_two_concurrent_imports_into_one_company_both_succeed(db) -> None:
    with open_session(db) as s, s.begin():
        catalog.get_or_create_tenant(s, "acme")
    text = "".join(f"N{i},2026-01-{d:02d},{i + 1},\n" for i in range(30) for d in range(1, 6))
    prices = _prices(text)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            ingest.import_prices(db, "acme", prices, "f.csv", Principal.system())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_session(db) as s:
        assert s.scalar(select(func.count()).select_from(PriceObservation)) == 150
        assert s.scalar(select(func.count()).select_from(Product)) == 30


def test_store_without_a_run_keeps_no_changes(db) -> None:
    """Seeds and demo imports store without a run id: nothing extra is written."""
    with open_session(db) as s, s.begin():
        ten = catalog.get_or_create_tenant(s, "acme")
        history.store_prices(s, ten.id, _prices("A,2026-01-01,1,\n"))
        assert s.scalar(select(func.count()).select_from(history.ImportChange)) == 0


def test_a_file_with_many_bad_rows_counts_them_all() -> None:
    """Only the first problems are listed, but the message counts every one of them."""
    from procurement.data.importers import MAX_ERRORS_REPORTED, split_valid, validate_prices

    rows = pd.DataFrame({"sku": ["A"] * 180, "date": ["2026-01-01"] * 180, "price": ["abc"] * 180})
    rows["date"] = [f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(180)]
    with pytest.raises(ImportValidationError) as exc:
        validate_prices(rows, "f.csv")
    assert len(exc.value.errors) == MAX_ERRORS_REPORTED and exc.value.total == 180
    assert "and 179 more problems" in str(exc.value)
    with pytest.raises(ImportValidationError) as exc:  # dropping bad rows leaves none
        split_valid(rows, "f.csv")
    assert exc.value.total == 180 and "and 179 more problems" in str(exc.value)
