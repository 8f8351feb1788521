"""Monthly prices (commodity price sheets are monthly): inferred from their dates, forecast on
the same day of the month the file uses, and backtested like weekly ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
