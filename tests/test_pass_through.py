"""Each product's own rate of following its drivers: measured on its history, a feature of the
model, and what its forecast of the days its index already decided follows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from procurement.forecast.features import driver_features, pass_through, spec_for
from procurement.forecast.model import TrainingData, fit_price_model, prepare

pytestmark = pytest.mark.filterwarnings("ignore:Found null values in:UserWarning")

LAG = 7  # the supplier's price list follows the index a week late


def _catalog(
    rates: dict[str, float], days: int = 400, seed: int = 5, fall_at_end: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily prices of products that pass on ``rates`` of their category's index move a week
    late, with noise of their own; the index falls by ``fall_at_end`` over its last week."""
    rng = np.random.default_rng(seed)
    n = days + LAG
    dates = pd.date_range("2025-01-01", periods=n, freq="D")
    log_idx = np.cumsum(rng.normal(0, 0.012, n))
    if fall_at_end:
        log_idx[-LAG:] += np.linspace(0, np.log(1 - fall_at_end), LAG + 1)[1:]
    drivers = pd.DataFrame({"name": "index:steel", "ds": dates, "value": 100 * np.exp(log_idx)})
    rows = []
    for sku, rate in rates.items():
        own = np.cumsum(rng.normal(0, 0.003, days))
        price = 50 * np.exp(rate * (log_idx[:days] - log_idx[0]) + own)
        rows.append(pd.DataFrame({"unique_id": sku, "ds": dates[LAG:], "y": price}))
    return pd.concat(rows, ignore_index=True), drivers


def test_each_products_rate_is_measured_on_its_own_history_and_none_where_it_does_not_follow() -> (
    None
):
    prices, drivers = _catalog({"full": 1.0, "half": 0.5, "none": 0.0})
    spec = spec_for("D")
    cats = dict.fromkeys(("full", "half", "none"), "steel")
    rates = pass_through(prices, spec, drivers, cats, prices["ds"].max())
    assert rates is not None
    week = rates[f"index_chg_l{LAG}"]
    # in units of each product's own typical change: the half product's changes are half the
    # index's plus its noise, so its rate is not half the full one's, but both are well above 0
    assert week["full"] > week["half"] > 0.3 * week["full"]
    assert week["none"] == 0.0  # its slope is noise: below the t-statistic's bar
    assert rates["index_chg_l1"].abs().max() < 0.2 * week["full"]  # yesterday's move passes none

    # the feature beside the index's change: that change times the product's rate
    keys = prices[prices["ds"] > prices["ds"].max() - pd.Timedelta(days=20)][["unique_id", "ds"]]
    x = driver_features(keys, spec, drivers, cats, None, prices["ds"].max(), pass_rates=rates)
    for sku in ("full", "half", "none"):
        own = x[x["unique_id"] == sku]
        np.testing.assert_allclose(
            own[f"pass_index_chg_l{LAG}"], week[sku] * own[f"index_chg_l{LAG}"]
        )
    # a product the rates do not know has no value, not another product's
    unknown = driver_features(
        keys.assign(unique_id="new"), spec, drivers, cats, None, keys["ds"].max(), pass_rates=rates
    )
    assert unknown[f"pass_index_chg_l{LAG}"].isna().all()


def test_a_commodity_forecast_follows_the_index_move_at_its_own_rate() -> None:
    """The index fell 8% over the last week: a product passing on all of it will fall about 8%
    over the next week, one passing on a fifth about 1.6%. One global model without the rates
    drew both at the same average fall."""
    rates = {f"full{i}": 1.0 for i in range(6)} | {f"fifth{i}": 0.2 for i in range(6)}
    prices, drivers = _catalog(rates, fall_at_end=0.08, seed=11)
    cats = dict.fromkeys(rates, "steel")
    data = TrainingData(prices=prices, drivers=drivers, categories=cats)
    _, _, exog, prepared = prepare(data, "D", None)
    assert f"pass_index_chg_l{LAG}" in exog and prepared.pass_rates is not None

    model = fit_price_model(data, "D", 14)
    assert model.pass_rates is not None and f"pass_index_chg_l{LAG}" in model.exog
    fc = model.predict(14)
    last = prices.groupby("unique_id")["y"].last()
    week = fc[fc.groupby("sku").cumcount() == LAG - 1].set_index("sku")["y_pred"]
    fall = 1 - week / last.reindex(week.index)
    full = fall[fall.index.str.startswith("full")].mean()
    fifth = fall[fall.index.str.startswith("fifth")].mean()
    assert full > 0.05  # most of the 8% its index already made
    assert fifth < 0.4 * full
