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
    with session.begin():
        res = train_global_lgbm_model(session, "demo", settings)
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
