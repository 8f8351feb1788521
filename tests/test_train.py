"""Training from the database (SQLite and MariaDB) through to predictions and advice."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from procurement import demo
from procurement.db.models import ModelRun
from procurement.forecast import store
from procurement.forecast.predict import load_current, predict_prices, recommendations
from procurement.training import train_global_lgbm_model


def test_train_from_database_publishes_model_with_metadata(session, settings) -> None:
    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=8, n_days=200)
    said: list[tuple[float, str]] = []
    with session.begin():
        res = train_global_lgbm_model(
            session, "demo", settings, progress=lambda f, m: said.append((f, m))
        )
    # the bar never runs backwards (it went from 95% to 92% when the promotion calendars of
    # every product came before saving) and ends full
    fractions = [f for f, _ in said]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, said
    assert any("promotion calendars of every product" in m for _, m in said)
    meta = store.read_metadata(settings.model_dir, "demo")
    assert meta["version"] == res.version
    for key in (
        "trained_at",
        "data_start",
        "data_end",
        "features",
        "params",
        "metrics",
        "libraries",
    ):
        assert key in meta
    assert meta["n_products"] == 8 and meta["freq"] == "D"
    assert "index_chg_l7" in meta["features"]
    run = session.scalar(select(ModelRun))
    assert run.status == "done" and run.version == res.version

    model = load_current(settings.model_dir, "demo").model
    fc = predict_prices(model)
    assert fc["sku"].nunique() == 8 and np.isfinite(fc[["y_pred", "lo_95", "hi_95"]]).all().all()
    recs = recommendations(model)
    assert len(recs) == 8 and recs["confidence"].between(0, 1).all()


def test_train_without_data_is_a_clear_error(session, settings) -> None:
    import pytest

    from procurement.db.catalog import get_or_create_tenant

    with session.begin():
        get_or_create_tenant(session, "empty")
    with pytest.raises(ValueError, match="no price history"):
        train_global_lgbm_model(session, "empty", settings)


def test_weekly_history_is_loaded_whole_and_daily_history_up_to_the_cap(session) -> None:
    import pandas as pd

    from procurement.db.catalog import get_or_create_tenant
    from procurement.db.history import store_prices
    from procurement.training import load_training_data

    def prices(freq: str, n: int) -> pd.DataFrame:
        dates = pd.date_range("2018-01-01", periods=n, freq=freq).date
        return pd.DataFrame(
            {"sku": np.repeat(["A", "B"], n), "date": np.tile(dates, 2), "price": 10.0}
        )

    with session.begin():
        weekly = get_or_create_tenant(session, "weekly")
        daily = get_or_create_tenant(session, "daily")
        store_prices(session, weekly.id, prices("W-MON", 400))  # 7.7 years
        store_prices(session, daily.id, prices("D", 2000))
    got = load_training_data(session, weekly.id, max_days=730).prices
    assert len(got) == 800
    got = load_training_data(session, daily.id, max_days=730).prices
    span = (got["ds"].max() - got["ds"].min()).days
    assert 730 <= span <= 730 * 1.5 + 60 < 2000


def test_a_long_sales_history_read_in_a_second_process_is_the_one_read_here(
    session, monkeypatch
) -> None:
    """On a SQLite file the loader reads the sales in a child process beside the prices; the
    frame must equal the in-process read, also when the child fails (it reads here then), and
    a weekly company's sales are read whole. On MariaDB the read stays in process."""
    import pandas as pd

    from procurement.db import bulkread, history
    from procurement.db.catalog import get_or_create_tenant, get_tenant
    from procurement.db.history import store_prices
    from procurement.training import load_training_data

    with session.begin():
        demo.seed_synthetic(session, "demo", n_products=6, n_days=120)
        weekly = get_or_create_tenant(session, "weekly")
        dates = pd.date_range("2018-01-01", periods=300, freq="W-MON").date
        rows = pd.DataFrame({"sku": "A", "date": dates, "price": 9.0, "quantity": 3.0})
        store_prices(session, weekly.id, rows)
    ten = get_tenant(session, "demo")
    here = load_training_data(session, ten.id, max_days=730)
    started: list[object] = []
    real = bulkread.BackgroundRead.__init__

    def spy(self, path, sql):  # type: ignore[no-untyped-def]
        started.append(sql)
        real(self, path, sql)

    monkeypatch.setattr(bulkread.BackgroundRead, "__init__", spy)
    fallbacks: list[str] = []
    read_here = bulkread.read
    monkeypatch.setattr(bulkread, "read", lambda p, q: fallbacks.append(q) or read_here(p, q))
    monkeypatch.setattr(history, "BACKGROUND_READ_ROWS", 1)
    there = load_training_data(session, ten.id, max_days=730)
    on_sqlite = session.get_bind().dialect.name == "sqlite"
    assert len(started) == (1 if on_sqlite else 0) and not fallbacks  # the child's rows
    assert here.sales is not None and len(here.sales) > 500
    pd.testing.assert_frame_equal(there.sales, here.sales)
    pd.testing.assert_frame_equal(there.prices, here.prices)
    # a weekly company: the capped read is dropped for the whole history
    got = load_training_data(session, weekly.id, max_days=730)
    assert got.sales is not None and len(got.sales) == 300
    if on_sqlite:
        monkeypatch.setattr(bulkread.sys, "executable", "/bin/false")  # the child fails
        failed = load_training_data(session, ten.id, max_days=730)
        pd.testing.assert_frame_equal(failed.sales, here.sales)
        assert len(fallbacks) == 1


def test_a_child_that_dies_before_reading_its_query_falls_back_to_reading_here(
    tmp_path, monkeypatch
):
    """A query larger than a pipe holds, sent to a child that exits at once, breaks the pipe;
    the read must still come back, from this process."""
    import sqlite3
    import sys

    from procurement.db import bulkread

    path = str(tmp_path / "p.db")
    con = sqlite3.connect(path)
    con.execute("create table t (pid integer, d text, v real)")
    con.executemany(
        "insert into t values (?, ?, ?)", [(1, "2026-01-01", 2.5), (2, "2026-01-02", 4.0)]
    )
    con.commit()
    con.close()
    sql = (
        "select pid, count(*), group_concat(d || ',' || v, char(10)) from t group by pid"
        + " " * 300_000  # far more than a pipe's buffer
    )
    monkeypatch.setattr(bulkread.sys, "executable", "/bin/false")
    ids, dates, values = bulkread.BackgroundRead(path, sql).result()
    monkeypatch.setattr(bulkread.sys, "executable", sys.executable)
    assert list(ids) == [1, 2] and list(values) == [2.5, 4.0]
    assert [str(d)[:10] for d in dates] == ["2026-01-01", "2026-01-02"]


def test_a_product_without_todays_price_is_forecast_from_today(session, settings) -> None:
    """The newest day of the company's prices is today for every product: one whose price did
    not come in for the last days is carried forward at its last price, and its buy day is
    not in the past."""
    import pandas as pd

    from procurement import actions
    from procurement.auth import Principal
    from procurement.db.catalog import get_or_create_tenant
    from procurement.db.history import store_prices

    rng = np.random.default_rng(4)
    dates = pd.date_range("2026-01-01", periods=240, freq="D")
    frames = []
    for i in range(6):
        price = np.round(50 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates)))), 2)
        frames.append(pd.DataFrame({"sku": f"P{i}", "date": dates.date, "price": price}))
    rows = pd.concat(frames, ignore_index=True)
    late = (rows["sku"] == "P5") & (rows["date"] > dates[-4].date())  # P5: 3 days missing
    with session.begin():
        ten = get_or_create_tenant(session, "gaps")
        store_prices(session, ten.id, rows[~late].assign(quantity=1.0))
    with session.begin():
        train_global_lgbm_model(session, "gaps", settings)
    model = load_current(settings.model_dir, "gaps").model
    fc = predict_prices(model)
    first = fc.groupby("sku")["date"].min()
    assert set(first) == {dates[-1] + pd.Timedelta(1, "D")}, first
    recs = recommendations(model)
    assert (pd.to_datetime(recs["buy_date"]) > dates[-1]).all()
    # and it says how old its price is, on the Recommendations page and in `recommend`
    assert model.stale_prices() == {"P5": pd.Timestamp(dates[-4])}
    advice = actions.advice(Principal.system(), session=session, tenant="gaps", settings=settings)
    reasons = advice.set_index("sku")["reason"]
    assert reasons["P5"].endswith(
        f"its newest price is from {dates[-4]:%a %d %b %Y}, taken as today's"
    )
    assert not reasons.drop("P5").str.contains("newest price").any()
    # the Product page's own advice too
    page = actions.product_advice(
        Principal.system(), session=session, tenant="gaps", sku="P5", settings=settings
    )
    assert page.rec["reason"].endswith(f"from {dates[-4]:%a %d %b %Y}, taken as today's")
    other = actions.product_advice(
        Principal.system(), session=session, tenant="gaps", sku="P0", settings=settings
    )
    assert "newest price" not in other.rec["reason"]
    # a price of P5 that came in after the training, a day later than the others'
    tomorrow = pd.DataFrame(
        {"sku": ["P5"], "date": [dates[-1] + pd.Timedelta(1, "D")], "price": [50.0]}
    )
    assert set(model.stale_prices(tomorrow)) == {f"P{i}" for i in range(5)}
