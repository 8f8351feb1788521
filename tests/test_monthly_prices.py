"""Monthly prices (commodity price sheets are monthly): inferred from their dates, forecast on
the same day of the month the file uses, and backtested like weekly ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from procurement.forecast.backtest import run_backtest
from procurement.forecast.features import infer_freq, regularize
from procurement.forecast.model import TrainingData, fit_price_model


def _monthly(
    month_end: bool, products: int = 6, months: int = 150, sd: float = 0.04
) -> pd.DataFrame:
    """Random walks with a yearly pattern, dated on the first or the last day of each month."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2012-01-01", periods=months, freq="ME" if month_end else "MS")
    season = 0.05 * np.sin(2 * np.pi * dates.month.to_numpy() / 12)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"M{i}",
                    "ds": dates,
                    "y": np.round(50 * np.exp(np.cumsum(rng.normal(0, sd, months)) + season), 2),
                }
            )
            for i in range(products)
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize("month_end", [False, True])
def test_monthly_prices_are_forecast_on_their_own_day_of_the_month(month_end: bool) -> None:
    prices = _monthly(month_end)
    freq = infer_freq(prices)
    assert freq == ("ME" if month_end else "MS")
    # a price dated mid-month counts for its month; a missing month is filled, not invented
    gappy = prices.drop(index=[5]).assign(
        ds=lambda d: d["ds"].where(
            d.index != 7, d["ds"] + pd.Timedelta(days=-10 if month_end else 12)
        )
    )
    reg = regularize(gappy, freq)
    assert len(reg) == len(prices) and not reg.loc[5, "observed"]
    assert reg["ds"].tolist() == prices["ds"].tolist()

    model = fit_price_model(TrainingData(prices=prices), freq, horizon=3)
    fc = model.predict(3)
    last = prices["ds"].max()
    ahead = pd.date_range(last, periods=4, freq=freq)[1:]
    assert fc.groupby("sku")["date"].apply(list).map(lambda d: d == list(ahead)).all()
    assert fc[["y_pred", "lo_80", "hi_80", "p_cheaper"]].notna().all().all()


def test_monthly_backtest_reports_its_windows() -> None:
    prices = _monthly(False).rename(columns={"unique_id": "sku", "ds": "date", "y": "price"})
    res = run_backtest(prices, horizon=3, folds=2)
    assert res.metrics["freq"] == "MS" and res.metrics["folds"] == 2
    assert res.forecasts["date"].dt.day.eq(1).all()
    assert 0.5 < res.metrics["model"]["mase_vs_naive"] < 1.5


def test_bands_of_a_log_price_model_stop_at_zero() -> None:
    prices = _monthly(False, sd=0.2)  # a volatile market: a year ahead its band spans zero
    model = fit_price_model(TrainingData(prices=prices), "MS", horizon=3)
    assert model.on_logs
    fc = model.predict(12)
    assert (fc[["lo_80", "lo_95"]] >= 0).all().all()
    assert (fc["lo_95"] == 0).any()  # it would have reached below zero
    assert (fc["hi_95"] > fc["y_pred"]).all()


def test_product_page_of_a_monthly_company_shows_years_of_history(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from procurement import actions, auth
    from procurement.config import get_settings
    from procurement.db import catalog, make_engine, migrate, open_session
    from procurement.training import train_global_lgbm_model

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("LGBM_N_ESTIMATORS", "40")
    get_settings.cache_clear()
    try:
        engine = make_engine(get_settings().database_url)
        migrate(engine)
        csv = tmp_path / "monthly.csv"
        prices = _monthly(False, products=3, months=150)
        prices.rename(columns={"unique_id": "sku", "ds": "date", "y": "price"}).to_csv(
            csv, index=False, date_format="%Y-%m-%d"
        )
        with open_session(engine) as s:
            actions.import_price_file(
                auth.Principal.system(), session=s, tenant="monthly", path=csv
            )
        with open_session(engine) as s, s.begin():
            train_global_lgbm_model(s, "monthly", get_settings())
            tid = catalog.get_tenant(s, "monthly").id
            auth.create_user(s, "mbuyer", "a-long-password-1", "buyer", tid)
        at = AppTest.from_file(
            str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=120
        )
        at.session_state["authentication_status"] = True
        at.session_state["username"] = at.session_state["name"] = "mbuyer"
        at.session_state["principal"] = auth.Principal("mbuyer", "buyer", tid)
        at.query_params["sku"] = "M0"
        at.run()
        at.switch_page("pages/product.py").run()
        assert not at.exception and not at.error
        frames = [
            pa.ipc.open_stream(ds.data.data).read_pandas()
            for ds in at.get("vega_lite_chart")[0].proto.datasets
        ]
        seen = pd.concat([f for f in frames if "price" in f.columns])["date"]
        ahead = pd.concat([f for f in frames if "lo_95" in f.columns])
        # three times the 14 months ahead, not the three months a daily product shows
        assert pd.Timestamp(seen.max()) - pd.Timestamp(seen.min()) > pd.Timedelta(days=3 * 365)
        assert (ahead["lo_95"] >= 0).all()
    finally:
        get_settings.cache_clear()
