"""The data layer against real SQLite and MariaDB: idempotent, transactional, tenant-scoped."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import END
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from procurement import actions, demo
from procurement.auth import Principal
from procurement.data.importers import ImportValidationError, validate_prices
from procurement.db import catalog, history, migrate
from procurement.db.history import UpsertCounts
from procurement.db.models import PriceObservation, Product, Sale

SYSTEM = Principal.system()


def _count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _schema(engine) -> tuple[str, dict[str, list[str]]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect, text

    with engine.connect() as c:
        version = c.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    insp = inspect(engine)
    return version, {
        t: sorted(col["name"] for col in insp.get_columns(t)) for t in insp.get_table_names()
    }


def test_migrate_twice_is_a_no_op_and_matches_the_models(db, session: Session) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from procurement.db import MIGRATIONS_DIR
    from procurement.db.models import Base

    with session.begin():
        catalog.get_or_create_tenant(session, "kept")
    before = _schema(db)
    migrate(db)
    migrate(db)
    assert _schema(db) == before
    assert catalog.get_tenant(session, "kept") is not None
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert before[0] == ScriptDirectory.from_config(cfg).get_current_head()
    for name, table in Base.metadata.tables.items():
        assert before[1][name] == sorted(c.name for c in table.columns), name


def _import(session: Session, tenant: str, path) -> UpsertCounts:  # type: ignore[no-untyped-def]
    """A price file through the application layer, as the CLI imports it."""
    res = actions.import_price_file(SYSTEM, session=session, tenant=tenant, path=path)
    session.rollback()  # a fresh snapshot for the checks that follow
    return res.counts


def test_import_same_file_twice_changes_nothing(session: Session, tmp_path) -> None:
    f = tmp_path / "p.csv"
    f.write_text(
        "sku,date,price,quantity,supplier\nA,2026-01-01,1.0,5,Acme\nA,2026-01-02,1.1,,Acme\nB,2026-01-01,7,2,Beta\n"
    )
    first = _import(session, "acme", f)
    second = _import(session, "acme", f)
    assert (first.added, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.added, second.updated, second.unchanged) == (0, 0, 3)
    assert _count(session, PriceObservation) == 3
    assert _count(session, Sale) == 2


def test_corrected_file_updates_changed_prices_only(session: Session, tmp_path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("sku,date,price\nA,2026-01-01,1.0\nA,2026-01-02,1.1\n")
    _import(session, "acme", f)
    f.write_text("sku,date,price\nA,2026-01-01,1.0\nA,2026-01-02,1.25\n")
    counts = _import(session, "acme", f)
    assert (counts.added, counts.updated, counts.unchanged) == (0, 1, 1)
    ten = catalog.get_tenant(session, "acme")
    prices = history.load_prices(session, ten.id)
    assert prices["price"].tolist() == [1.0, 1.25]


def test_file_with_one_bad_row_stores_nothing(session: Session, tmp_path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("sku,date,price\nA,2026-01-01,1.0\n")
    _import(session, "acme", good)
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,date,price\nB,2026-01-01,2.0\nC,2026-01-02,-3\n")
    with pytest.raises(ImportValidationError, match="line 3, field 'price'"):
        _import(session, "acme", bad)
    assert _count(session, PriceObservation) == 1
    assert _count(session, Product) == 1


def test_failure_during_store_rolls_back_everything(session: Session) -> None:
    df = validate_prices(
        pd.DataFrame({"sku": ["A", "B"], "date": ["2026-01-01"] * 2, "price": ["1", "2"]})
    )
    with pytest.raises(RuntimeError), session.begin():
        ten = catalog.get_or_create_tenant(session, "acme")
        history.store_prices(session, ten.id, df)
        raise RuntimeError("crash after writing")
    assert _count(session, PriceObservation) == 0
    assert catalog.get_tenant(session, "acme") is None


def test_companies_with_the_same_sku_see_only_their_own_prices(session: Session) -> None:
    for slug, price in (("a", 1.0), ("b", 99.0)):
        df = validate_prices(
            pd.DataFrame({"sku": ["X"], "date": ["2026-01-01"], "price": [str(price)]})
        )
        with session.begin():
            ten = catalog.get_or_create_tenant(session, slug)
            history.store_prices(session, ten.id, df)
    a = catalog.get_tenant(session, "a")
    assert history.load_prices(session, a.id)["price"].tolist() == [1.0]
    assert catalog.load_products(session, a.id)["sku"].tolist() == ["X"]


def test_seed_writes_prices_drivers_sales_and_stock(session: Session) -> None:
    with session.begin():
        counts = demo.seed_synthetic(session, "demo", n_products=5, n_days=90)
    ten = catalog.get_tenant(session, "demo")
    assert counts.added == 5 * 90
    assert set(history.load_drivers(session, ten.id)["name"]) >= {"fx", "index:steel"}
    products = catalog.load_products(session, ten.id)
    assert products["on_hand"].notna().all() and products["supplier"].notna().all()
    assert len(history.load_sales(session, ten.id)) == 5 * 90


def test_large_tables_are_stored_in_product_groups_with_the_same_result(
    session, monkeypatch
) -> None:
    monkeypatch.setattr(history, "PRODUCT_GROUP_ROWS", 100)  # force many groups
    with session.begin():
        counts = demo.seed_synthetic(session, "demo", n_products=7, n_days=90)
    assert counts.added == 7 * 90
    from procurement.data.synthetic import generate

    again = validate_prices(generate(7, 90, seed=7, end=END).prices)
    with session.begin():
        ten = catalog.get_tenant(session, "demo")
        second = history.store_prices(session, ten.id, again)
    assert (second.added, second.updated, second.unchanged) == (0, 0, 7 * 90)
    assert _count(session, PriceObservation) == 7 * 90


def test_stock_and_catalog_files_update_products(session, tmp_path) -> None:
    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=3, n_days=60)
    cat = tmp_path / "catalog.csv"
    cat.write_text(
        "sku,name,category,currency\nSKU-00001,Hex bolt M8,fasteners,eur\nNEW-1,New item,fasteners,USD\n"
    )
    stock = tmp_path / "stock.csv"
    stock.write_text("sku,on_hand,lead_time_days\nSKU-00001,42,5\nNEW-1,0,12\n")
    with session.begin():
        assert actions.import_catalog_file(SYSTEM, session=session, tenant="demo", path=cat) == 2
        assert actions.import_stock_file(SYSTEM, session=session, tenant="demo", path=stock) == 2
    products = catalog.load_products(session, catalog.get_tenant(session, "demo").id).set_index(
        "sku"
    )
    assert (
        products.loc["SKU-00001", "name"] == "Hex bolt M8"
        and products.loc["SKU-00001", "currency"] == "EUR"
    )
    assert (
        products.loc["SKU-00001", "on_hand"] == 42 and products.loc["NEW-1", "lead_time_days"] == 12
    )


def test_a_catalog_file_sets_each_suppliers_working_days(session, tmp_path) -> None:
    """``working_days`` of a catalog file reaches the supplier (canonical form) and the advice's
    product table; a supplier nobody set works Monday to Friday."""
    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=3, n_days=60)
    tid = catalog.get_tenant(session, "demo").id
    before = catalog.load_products(session, tid).set_index("sku")
    assert set(before["working_days"]) == {"Mon-Fri"}
    session.rollback()
    cat = tmp_path / "catalog.csv"
    cat.write_text(
        "sku,supplier,working_days\nSKU-00001,Saturday Co,mon - sat\n"
        "NEW-1,Saturday Co,Monday-Saturday\nNEW-2,Twice a week,Tue/Thu\nNEW-3,,\n"
    )
    with session.begin():
        assert actions.import_catalog_file(SYSTEM, session=session, tenant="demo", path=cat) == 4
    products = catalog.load_products(session, tid).set_index("sku")
    assert products.loc["SKU-00001", "working_days"] == "Mon-Sat"
    assert products.loc["NEW-2", "working_days"] == "Tue,Thu"
    assert products.loc["NEW-3", "working_days"] == "Mon-Fri"  # no supplier
    assert products.loc["SKU-00002", "working_days"] == before.loc["SKU-00002", "working_days"]
    sups = actions.suppliers(SYSTEM, session=session, tenant="demo").set_index("supplier")
    assert sups.loc["Saturday Co", "working_days"] == "Mon-Sat"
    assert sups.loc["Saturday Co", "products"] == 2
    assert catalog.working_days_of(session, tid, "NEW-2") == "Tue,Thu"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "sku,supplier,working_days\nA,Acme,Mon-Sat\nB,Acme,Funday\n",
            "line 3, field 'working_days': 'Funday' is not a list of working days",
        ),
        (
            "sku,supplier,working_days\nA,,Mon-Sat\n",
            "line 2, field 'working_days': needs the supplier's name",
        ),
        (
            "sku,supplier,working_days\nA,Acme,Mon-Sat\nB,Acme,Mon-Fri\n",
            "line 3, field 'working_days': 'Mon-Fri' for Acme, but line 2 gives Mon-Sat",
        ),
    ],
)
def test_bad_working_days_in_a_catalog_store_nothing(session, tmp_path, content, message) -> None:
    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=2, n_days=60)
    session.rollback()
    f = tmp_path / "catalog.csv"
    f.write_text(content)
    with pytest.raises(ImportValidationError, match=message), session.begin():
        actions.import_catalog_file(SYSTEM, session=session, tenant="demo", path=f)
    tid = catalog.get_tenant(session, "demo").id
    assert catalog.list_suppliers(session, tid)["supplier"].isin(["Acme"]).sum() == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sku,on_hand,lead_time_days\nSKU-00001,-1,5\n", "line 2, field 'on_hand'"),
        ("sku,on_hand,lead_time_days\nSKU-00001,3,2.5\n", "line 2, field 'lead_time_days'"),
        (
            "sku,on_hand,lead_time_days\nNOPE,3,2\n",
            "line 2, field 'sku': NOPE is not in the catalog",
        ),
        ("sku,on_hand\nSKU-00001,3\n", "field 'lead_time_days': required column is missing"),
    ],
)
def test_bad_stock_files_store_nothing(session, tmp_path, content: str, message: str) -> None:
    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=2, n_days=60)
    before = catalog.load_products(session, catalog.get_tenant(session, "demo").id)[
        "on_hand"
    ].tolist()
    session.rollback()  # end the read transaction before the import opens its own
    f = tmp_path / "stock.csv"
    f.write_text(content)
    with pytest.raises(ImportValidationError, match=message), session.begin():
        actions.import_stock_file(SYSTEM, session=session, tenant="demo", path=f)
    after = catalog.load_products(session, catalog.get_tenant(session, "demo").id)[
        "on_hand"
    ].tolist()
    assert after == before


def test_a_transaction_reads_its_own_prices_and_a_bulk_read_skips_unseen_products(
    db, session: Session
) -> None:
    """An import checks its prices inside its own transaction (outlier check): the read must
    see what the transaction wrote. On MariaDB the bulk reader (connectorx) works on its own
    connection; it is only for committed data, and products created since the session's
    snapshot are left out rather than breaking the read (two sources importing at once once
    raised IndexError here)."""
    first = validate_prices(pd.DataFrame({"sku": ["A"], "date": ["2026-01-01"], "price": ["1"]}))
    with session.begin():
        ten = catalog.get_or_create_tenant(session, "acme")
        history.store_prices(session, ten.id, first)
    with session.begin():
        new = validate_prices(
            pd.DataFrame({"sku": ["B", "A"], "date": ["2026-01-02"] * 2, "price": ["5", "2"]})
        )
        history.store_prices(session, ten.id, new)  # not committed yet
        inside = history.load_prices(session, ten.id)
        assert sorted(inside["sku"]) == ["A", "A", "B"]
    with Session(db) as reader, reader.begin():
        before = history.load_prices(reader, ten.id, committed=True)  # the snapshot starts here
        with Session(db) as writer, writer.begin():
            history.store_prices(
                writer,
                ten.id,
                validate_prices(
                    pd.DataFrame({"sku": ["C"], "date": ["2026-01-03"], "price": ["7"]})
                ),
            )
        after = history.load_prices(reader, ten.id, committed=True)
        assert len(before) == 3 and set(after["sku"]) <= {"A", "B", "C"}
        assert after["price"].notna().all()


def test_a_savepoint_is_undone_with_its_session_and_waits_for_other_writers(db) -> None:
    """A write in a savepoint (the assistant's tools, the retrain queue) belongs to the session's
    transaction: a rollback undoes it. On SQLite the savepoint once began a transaction of its own,
    so its release committed; and a write after a read inside it failed at once with "database
    is locked" when another connection had committed meanwhile (a flaky test, a lost click)."""
    import threading

    with Session(db) as s:
        s.scalar(select(func.count()).select_from(Product))
        with s.begin_nested():
            catalog.get_or_create_tenant(s, "rolled-back")
        s.rollback()
    with Session(db) as s:
        assert catalog.get_tenant(s, "rolled-back") is None

    errors: list[BaseException] = []

    def other_writer() -> None:
        try:
            with Session(db) as o, o.begin():
                catalog.get_or_create_tenant(o, "other")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Session(db) as s:
        with s.begin_nested():
            s.scalar(select(func.count()).select_from(Product))  # a read pins a snapshot
            t = threading.Thread(target=other_writer)
            t.start()
            t.join(0.5)  # the other writer commits now, or waits for this transaction
            catalog.get_or_create_tenant(s, "mine")
        s.commit()
    t.join(30)
    assert not errors and not t.is_alive()
    with Session(db) as s:
        assert catalog.get_tenant(s, "mine") is not None
        assert catalog.get_tenant(s, "other") is not None


def test_the_first_and_last_price_dates_are_the_companys_own(session: Session) -> None:
    """``price_dates`` (where a retrain starts reading) sees only its company's prices."""
    with session.begin():
        a = catalog.get_or_create_tenant(session, "early")
        b = catalog.get_or_create_tenant(session, "late")
        assert history.price_dates(session, a.id) == (None, None)
        for ten, days in ((a, ["2025-01-03", "2025-02-10", "2025-01-20"]), (b, ["2026-03-01"])):
            history.store_prices(
                session,
                ten.id,
                validate_prices(
                    pd.DataFrame(
                        {"sku": ["X"] * len(days), "date": days, "price": ["1"] * len(days)}
                    )
                ),
            )
    import datetime as dt

    assert history.price_dates(session, a.id) == (dt.date(2025, 1, 3), dt.date(2025, 2, 10))
    assert history.price_dates(session, b.id) == (dt.date(2026, 3, 1), dt.date(2026, 3, 1))
