"""Fresh forecasts from the newest prices without a retrain, interval quantiles per horizon
step, the shrunk change bias, and the drivers' moves over windows."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import training_data

from procurement.forecast.calibration import (
    GRID,
    Calibration,
    PoolCalibration,
    _adaptive_level,
    _shrunk_mean,
)
from procurement.forecast.features import driver_features, spec_for
from procurement.forecast.model import ModelParams, fit_price_model

# the random walk added to the catalog has no category, so no commodity index drives it
pytestmark = pytest.mark.filterwarnings("ignore:Found null values in index_chg:UserWarning")


def _catalog(small_data) -> pd.DataFrame:
    """The small synthetic catalog's prices and a random walk no model beats (every product of
    the catalog itself follows the model or its promotion calendar)."""
    prices = small_data.prices[["sku", "date", "price"]]
    dates = pd.to_datetime(prices["date"]).drop_duplicates().sort_values()
    rng = np.random.default_rng(0)
    walk = 40 * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
    extra = pd.DataFrame({"sku": "WALK-1", "date": dates.dt.date, "price": walk.round(2)})
    return pd.concat([prices, extra], ignore_index=True)


@pytest.fixture(scope="module")
def stale_model(small_data):
    """A model fitted on all but the last five days of the small synthetic catalog."""
    data = training_data(small_data)
    rows = _catalog(small_data).rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    rows = rows.assign(ds=pd.to_datetime(rows["ds"]))
    walk = rows[rows["unique_id"] == "WALK-1"]
    data = dataclasses.replace(
        data,
        prices=rows,
        sales=pd.concat([data.sales, walk[["unique_id", "ds"]].assign(quantity=10.0)]),
    )
    cut = data.prices["ds"].max() - pd.Timedelta(days=5)
    old = dataclasses.replace(
        data,
        prices=data.prices[data.prices["ds"] <= cut],
        drivers=data.drivers[data.drivers["ds"] <= cut],
        sales=data.sales[data.sales["ds"] <= cut],
    )
    return fit_price_model(old, "D", 14, ModelParams(n_estimators=40, max_history=240))


def test_fresh_forecast_starts_from_the_newest_price_without_changing_the_model(
    stale_model, small_data
) -> None:
    prices = _catalog(small_data)
    newest = pd.to_datetime(prices["date"]).max()
    before = stale_model.predict()
    fresh = stale_model.predict(prices=prices)
    assert fresh["date"].min() == newest + pd.Timedelta(days=1)
    assert fresh.groupby("sku").size().eq(14).all()
    assert np.isfinite(fresh[["y_pred", "lo_80", "hi_95", "p_cheaper"]]).all().all()
    # the shared model is untouched: it still forecasts from its own last day
    assert stale_model.predict()["date"].min() == before["date"].min()
    np.testing.assert_allclose(stale_model.predict()["y_pred"], before["y_pred"])
    # products left at their last price forecast exactly the newest price
    last = prices.assign(date=pd.to_datetime(prices["date"]))
    last = last[last["date"] == newest].set_index("sku")["price"]
    at_last = [s for s in stale_model.products if not stale_model.follows_model(s)]
    assert at_last
    first = fresh.groupby("sku")["y_pred"].first()
    np.testing.assert_allclose(first[at_last], last[at_last])
    # the newest prices move every forecast: 10% higher prices, higher forecasts
    up = stale_model.predict(prices=prices.assign(price=prices["price"] * 1.1))
    assert (up.groupby("sku")["y_pred"].first() > first).all()


def test_fresh_forecast_fills_days_without_a_price_and_ignores_old_rows(stale_model) -> None:
    assert stale_model.with_prices(pd.DataFrame(columns=["sku", "date", "price"])) is stale_model
    one = stale_model.products[0]
    day = stale_model.last_date + pd.Timedelta(days=3)
    rows = pd.DataFrame(
        {
            "sku": [one, one],
            "date": [stale_model.last_date, day],  # the first row is no news
            "price": [1.0, stale_model.last_price[one] * 0.9],
        }
    )
    fresh = stale_model.with_prices(rows)
    assert fresh.last_date == day
    assert fresh.last_price[one] == pytest.approx(stale_model.last_price[one] * 0.9)
    # the other products carry their last price to the new day
    other = stale_model.products[1]
    assert fresh.last_price[other] == stale_model.last_price[other]
    assert fresh.predict()["date"].min() == day + pd.Timedelta(days=1)


def _errors(rng: np.random.Generator, series: int, windows: int = 30) -> pd.DataFrame:
    """Scaled backtest errors: normal at step 1, heavy-tailed (Cauchy) at step 2."""
    rows = []
    for w in range(windows):
        for s in range(series):
            e1, e2 = rng.normal(), rng.standard_t(1)
            rows += [
                {"cutoff": w, "unique_id": s, "h": 1, "abs_err": abs(e1), "change_err": 0.0},
                {"cutoff": w, "unique_id": s, "h": 2, "abs_err": abs(e2), "change_err": e2 - e1},
            ]
    return pd.DataFrame(rows)


def test_interval_quantile_per_step_covers_each_step() -> None:
    rng = np.random.default_rng(0)
    pool = PoolCalibration.fit(_errors(rng, series=100), horizon=2)
    test = _errors(np.random.default_rng(11), series=100)
    for h in (1, 2):
        half = pool.width(80, np.array([h - 1]))[0]
        covered = (test.loc[test["h"] == h, "abs_err"] <= half).mean()
        assert covered == pytest.approx(0.8, abs=0.04)  # one pooled quantile: 88% and 72%
    # relative to its median the heavy-tailed step needs the wider quantile
    assert pool.q_h[80][1] > pool.q_h[80][0]


def test_adaptive_level_widens_after_misses_and_never_narrows_below_nominal() -> None:
    rng = np.random.default_rng(4)
    window = np.repeat(np.arange(8), 200)
    errors = np.abs(rng.normal(size=len(window)))
    # volatile early windows, calm recent ones: their quantile over-covered the calm windows,
    # and the walk used to narrow the band below nominal for them
    calming = errors * np.where(window < 3, 3.0, 1.0)
    assert _adaptive_level(calming, window, 0.8) == pytest.approx(0.8)
    # calm early windows, volatile recent ones: the band widens
    turning = errors * np.where(window >= 5, 3.0, 1.0)
    assert _adaptive_level(turning, window, 0.8) > 0.85


def _window(
    uid: str, dates: pd.DatetimeIndex, y: np.ndarray, c: int, horizon: int, path: Any, **extra: Any
) -> pd.DataFrame:
    """Backtest rows of one window: the forecast ``path`` of the ``horizon`` days after
    position ``c``."""
    ahead = slice(c + 1, c + 1 + horizon)
    return pd.DataFrame(
        {
            "unique_id": uid,
            "ds": dates[ahead],
            "cutoff": dates[c],
            "y": y[ahead],
            "naive": y[c],
            "lgbm": path,
            **extra,
        }
    )


def _shelf_backtest(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and backtest rows of 40 mean-reverting products forecast by a model (their
    level) and 20 random walks left at their last price."""
    days, horizon = 330, 14
    dates = pd.date_range("2025-01-01", periods=days, freq="D")
    frames, rows = [], []
    for i in range(60):
        walk = i >= 40
        y = np.empty(days)
        y[0] = 100.0
        for t in range(1, days):
            shock = rng.normal(0, 1.0)
            y[t] = y[t - 1] + shock if walk else 100 + 0.5 * (y[t - 1] - 100) + shock
        frames.append(pd.DataFrame({"unique_id": f"P{i:02d}", "ds": dates, "y": y}))
        for c in range(days - 9 * horizon, days - horizon, horizon):
            path = y[c] if walk else 100 + 0.5 ** np.arange(1, horizon + 1) * (y[c] - 100)
            rows.append(_window(f"P{i:02d}", dates, y, c, horizon, path, pool=not walk))
    return pd.concat(frames, ignore_index=True), pd.concat(rows, ignore_index=True)


def test_products_left_at_their_last_price_get_bands_from_their_own_errors() -> None:
    frame, cv = _shelf_backtest(np.random.default_rng(6))
    calib = Calibration.from_backtest(cv, frame, 14, 30)
    # the next months of three such shelves
    out = pd.concat(
        [calib.replay(*_shelf_backtest(np.random.default_rng(s))[::-1]) for s in (7, 8, 9)]
    )
    inside = out["y"].between(out["lo_80"], out["hi_80"])
    walks = out["sku"].str.split("@").str[0].isin({f"P{i}" for i in range(40, 60)})
    # from every product's naive errors, most of them the mean-reverting products' small ones,
    # the walks' bands held 64% of their prices (61-68% over five seeds)
    assert inside[walks].mean() == pytest.approx(0.8, abs=0.05)
    assert inside[~walks].mean() == pytest.approx(0.8, abs=0.05)


def test_change_bias_is_kept_when_clear_and_dropped_when_within_noise() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0.05, 1.0, 400)
    assert _shrunk_mean(noise, n_eff=400) == pytest.approx(0.0, abs=0.03)
    # the same errors from a dozen products that move together: little evidence of a bias
    assert _shrunk_mean(rng.normal(0.3, 1.0, 400), n_eff=12) == 0.0
    clear = rng.normal(1.0, 1.0, 400)
    assert _shrunk_mean(clear, n_eff=400) == pytest.approx(clear.mean(), rel=0.02)


def test_driver_moves_over_windows_use_values_up_to_the_day_before() -> None:
    spec = spec_for("D")
    dates = pd.date_range("2026-01-01", periods=60, freq="D")
    value = 100 * 1.01 ** np.arange(60)
    drivers = pd.DataFrame({"name": "fx", "ds": dates, "value": value})
    keys = pd.DataFrame({"unique_id": "A", "ds": dates[40:]})
    x = driver_features(keys, spec, drivers, None, None, dates[-1])
    short, long_ = spec.windows
    # on day t: the move from t-1-w to t-1
    np.testing.assert_allclose(x[f"drv_fx_chg_w{short}"], 1.01**short - 1)
    np.testing.assert_allclose(x[f"drv_fx_chg_w{long_}"], 1.01**long_ - 1)


def test_demand_ratio_is_recent_sales_over_their_longer_average_with_gaps_as_zero() -> None:
    spec = spec_for("D")
    rng = np.random.default_rng(4)
    dates = pd.date_range("2026-01-01", periods=120, freq="D")
    rows = [(u, d, float(rng.integers(0, 9))) for u in "AB" for d in dates if rng.random() < 0.6]
    sales = pd.DataFrame(rows, columns=["unique_id", "ds", "quantity"])
    sales = sales[~((sales["unique_id"] == "B") & (sales["ds"] < dates[50]))]  # B starts late
    keys = pd.DataFrame({"unique_id": ["A"] * 60 + ["B"] * 60, "ds": list(dates[60:]) * 2})
    x = driver_features(keys, spec, None, None, sales, dates[-1])
    short, long_ = spec.windows
    for lag in spec.driver_lags:
        for uid in "AB":
            daily = (
                sales[sales["unique_id"] == uid]
                .set_index("ds")["quantity"]
                .reindex(
                    pd.date_range(dates[0] - pd.Timedelta(days=200), dates[-1]), fill_value=0.0
                )
            )
            ref = (
                daily.rolling(short, min_periods=1).mean()
                / daily.rolling(long_, min_periods=1).mean()
            )
            ref = ref.replace([np.inf], np.nan).shift(lag).reindex(dates[60:])
            got = x.loc[x["unique_id"] == uid, f"demand_ratio_l{lag}"].to_numpy()
            np.testing.assert_allclose(got, ref.to_numpy(), rtol=1e-9, equal_nan=True)


def test_backtest_sees_drivers_as_known_at_each_cutoff_not_their_actual_moves() -> None:
    from procurement.forecast.model import TrainingData, _drivers_as_of_cutoffs, prepare

    dates = pd.date_range("2026-01-01", periods=120, freq="D")
    rng = np.random.default_rng(3)
    drivers = pd.DataFrame(
        {"name": "fx", "ds": dates, "value": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 120)))}
    )
    prices = pd.DataFrame({"unique_id": "A", "ds": dates, "y": 10 + rng.random(120)})
    data = TrainingData(prices=prices, drivers=drivers)
    frame, spec, exog, _ = prepare(data, "D", None)
    train = frame.drop(columns=["observed"])
    out = _drivers_as_of_cutoffs(train, spec, data, exog, n_windows=2, horizon=5)
    actual, seen = train["drv_fx_chg_l1"].to_numpy(), out["drv_fx_chg_l1"].to_numpy()
    # before the backtest windows nothing changes
    np.testing.assert_allclose(seen[:-10], actual[:-10])
    # in each window of 5 days: the first day's change is known at the cutoff, then the
    # driver stays at its last value
    for start in (-10, -5):
        assert seen[start] == pytest.approx(actual[start])
        np.testing.assert_allclose(seen[start + 1 : start + 5 or None], 0.0)
    assert np.abs(actual[-4:]).min() > 0  # the data did move
    # the moves over windows stop at the cutoff too: on the window's last day, the short
    # window's move ends at the cutoff (5 days back from that day)
    w = spec.windows[0]
    fx = drivers.set_index("ds")["value"]
    cut = dates[-6]
    want = fx[cut] / fx[dates[-1] - pd.Timedelta(days=w + 1)] - 1
    assert out[f"drv_fx_chg_w{w}"].iloc[-1] == pytest.approx(want)


def test_backtest_refits_weekly_windows_and_matches_mlforecast_when_one_fit_suffices() -> None:
    from procurement.forecast.model import (
        STALE_WEEKS,
        TrainingData,
        _cross_validation,
        make_forecaster,
    )

    rng = np.random.default_rng(4)
    params = ModelParams(n_estimators=10)
    for freq, n in (("D", 300), ("W-MON", 260)):
        dates = pd.date_range("2020-01-06", periods=n, freq=freq)
        prices = pd.DataFrame(
            {
                "unique_id": np.repeat(["A", "B"], n),
                "ds": np.tile(dates, 2),
                "y": 50 + np.cumsum(rng.normal(0, 1, 2 * n)),
            }
        )
        spec = spec_for(freq)
        horizon, windows = (14, 8) if freq == "D" else (4, 12)
        got = _cross_validation(
            lambda spec=spec: make_forecaster(spec, params),
            prices,
            spec,
            TrainingData(prices=prices),
            [],
            windows,
            horizon,
        )
        want = make_forecaster(spec, params).cross_validation(
            prices, n_windows=windows, h=horizon, refit=False, static_features=[]
        )
        want = want.sort_values(["unique_id", "cutoff", "ds"], ignore_index=True)
        assert got["cutoff"].nunique() == windows
        pd.testing.assert_frame_equal(
            got[["unique_id", "ds", "cutoff"]], want[["unique_id", "ds", "cutoff"]]
        )
        if freq == "D":  # 8 x 14 days fit within STALE_WEEKS: one fit, mlforecast's own
            np.testing.assert_allclose(got["lgbm"], want["lgbm"])
        else:  # 12 x 4 weeks: refitted every STALE_WEEKS, so later windows differ
            late = got["cutoff"] > got["cutoff"].min() + pd.Timedelta(weeks=STALE_WEEKS)
            assert not np.allclose(got.loc[late, "lgbm"], want.loc[late, "lgbm"])
            early = got["cutoff"] < got["cutoff"].min() + pd.Timedelta(weeks=STALE_WEEKS)
            np.testing.assert_allclose(got.loc[early, "lgbm"], want.loc[early, "lgbm"])


def test_last_recent_scale_is_the_per_row_scale_at_each_series_end() -> None:
    from procurement.forecast.calibration import last_recent_scale, recent_scale

    rng = np.random.default_rng(5)
    rows = []
    for i, kind in enumerate(["walk", "flat", "flat_end", "short"]):
        n = 12 if kind == "short" else 200
        y = 50 + np.cumsum(rng.normal(0, 1, n))
        if kind == "flat":
            y[:] = 7.0
        if kind == "flat_end":
            y[-40:] = y[-41]  # volatile, then a flat last window: falls back to its whole scale
        rows.append(pd.DataFrame({"unique_id": f"P{i}", "ds": pd.RangeIndex(n), "y": y}))
    frame = pd.concat(rows, ignore_index=True)
    for window in (7, 28):
        want = recent_scale(frame, window).groupby("unique_id", sort=False)["scale"].last()
        got = last_recent_scale(frame, window)
        pd.testing.assert_series_equal(got, want, check_names=False)


def test_weekly_changes_are_modelled_on_log_prices_and_new_prices_must_stay_positive() -> None:
    from mlforecast.target_transforms import GlobalSklearnTransformer

    from procurement.forecast.model import TrainingData, change_of_log, fit_price_model

    rng = np.random.default_rng(11)
    n = 260
    dates = pd.date_range("2020-01-06", periods=n, freq="W-MON")
    # moves proportional to the level: the price goes from 1 to about 4 over five years
    level = np.exp(np.linspace(0, np.log(4), n) + np.cumsum(rng.normal(0, 0.01, n)))
    prices = pd.DataFrame(
        {
            "unique_id": np.repeat(["A", "B"], n),
            "ds": np.tile(dates, 2),
            "y": np.r_[level, 2 * level],
        }
    )
    spec = spec_for("W-MON")
    assert change_of_log(spec, prices["y"])
    assert not change_of_log(spec, prices["y"].where(prices.index != 3, 0.0))
    assert not change_of_log(spec_for("D"), prices["y"])

    model = fit_price_model(TrainingData(prices=prices), "W-MON", 4, ModelParams(n_estimators=20))
    assert isinstance(model.fcst.ts.target_transforms[0], GlobalSklearnTransformer)
    fc = model.predict()
    last = prices.groupby("unique_id")["y"].last()
    ratio = fc.groupby("sku")["y_pred"].last() / last
    assert ratio.between(0.8, 1.25).all()  # back on the price scale, not log units
    new = pd.DataFrame({"sku": ["A"], "date": [dates[-1] + pd.Timedelta(weeks=1)], "price": [-1.0]})
    with pytest.raises(ValueError, match="must be positive"):
        model.with_prices(new)


def test_weekly_series_are_trained_whole_and_daily_ones_up_to_the_cap() -> None:
    from procurement.forecast.model import TrainingData, prepare

    for freq, n, kept in (("W-MON", 1000, 1000), ("D", 1000, 730)):
        dates = pd.date_range("2000-01-03", periods=n, freq=freq)
        data = TrainingData(prices=pd.DataFrame({"unique_id": "A", "ds": dates, "y": 5.0}))
        frame, _, _, _ = prepare(data, freq, max_history=730)
        assert len(frame) == kept


def test_weekly_models_are_judged_on_four_years_of_windows_monthly_on_eight_daily_on_the_setting() -> (
    None
):
    from procurement.forecast.model import WEEKLY_BACKTEST_WEEKS, _backtest_windows

    long_ = pd.Series([1500, 1400, 1600])
    assert _backtest_windows(long_, spec_for("W-MON"), 4, 8) == WEEKLY_BACKTEST_WEEKS // 4 == 52
    assert _backtest_windows(long_, spec_for("D"), 14, 8) == 8
    short = pd.Series([200, 200])  # a short weekly history gets what it allows, at least 2
    assert 2 <= _backtest_windows(short, spec_for("W-MON"), 4, 8) < 52
    # four years of months are 48 periods, too few market turns: monthly ones get 96 (8 years)
    assert _backtest_windows(pd.Series([400, 360]), spec_for("MS"), 3, 8) == 32


def test_backtest_demand_features_are_the_same_from_the_sample_of_series_as_from_all() -> None:
    """The backtest's cutoffs build demand only from the sampled series' sales; other products'
    sales (or the sample's own, filtered to the calendar) must not change a value."""
    from procurement.forecast.model import TrainingData, _drivers_as_of_cutoffs, prepare

    dates = pd.date_range("2026-01-01", periods=150, freq="D")
    rng = np.random.default_rng(6)
    prices = pd.DataFrame(
        {
            "unique_id": np.repeat(["A", "B"], 150),
            "ds": np.tile(dates, 2),
            "y": 10 + rng.random(300),
        }
    )
    sales = pd.DataFrame(
        {
            "unique_id": np.repeat(["A", "B", "C"], 150),
            "ds": np.tile(dates, 3),
            "quantity": rng.integers(0, 20, 450).astype(float),
        }
    )
    data = TrainingData(prices=prices, sales=sales)
    frame, spec, exog, _ = prepare(data, "D", None)
    train = frame.drop(columns=["observed"])
    sample = train[train["unique_id"] == "A"]
    got = _drivers_as_of_cutoffs(sample, spec, data, exog, n_windows=3, horizon=7)
    alone = TrainingData(prices=prices, sales=sales[sales["unique_id"] == "A"])
    want = _drivers_as_of_cutoffs(sample, spec, alone, exog, n_windows=3, horizon=7)
    pd.testing.assert_frame_equal(got, want)
    assert got[[c for c in exog if c.startswith("demand")]].notna().any().all()
    # and the windows' demand really is as of each cutoff: it differs from the actual rows'
    assert not np.allclose(
        got[exog[0]].tail(21).to_numpy(), sample[exog[0]].tail(21).to_numpy(), equal_nan=True
    )


def _promotion_backtest(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and backtest rows of 60 products around 100 that drop 20% in promotions, which
    end each day with a chance of one in four; the forecast is the expected path."""
    days, horizon, hazard = 400, 14, 0.25
    dates = pd.date_range("2025-01-01", periods=days, freq="D")
    frames, rows = [], []
    for i in range(60):
        promo = np.zeros(days, dtype=bool)
        t = int(rng.integers(0, 30))
        while t < days:
            length = int(rng.geometric(hazard))
            promo[t : t + length] = True
            t += length + int(rng.integers(20, 40))
        y = 100 * np.where(promo, 0.8, 1.0) + rng.normal(0, 1.0, days)
        frames.append(pd.DataFrame({"unique_id": f"P{i:02d}", "ds": dates, "y": y}))
        for c in range(days - 20 * horizon, days - horizon, 7):
            steps = np.arange(1, horizon + 1)
            path = 100 - 20 * (1 - hazard) ** steps if promo[c] else np.full(horizon, 100.0)
            rows.append(
                _window(f"P{i:02d}", dates, y, c, horizon, path, pool=True, running=promo[c])
            )
    return pd.concat(frames, ignore_index=True), pd.concat(rows, ignore_index=True)


def test_a_running_promotion_gets_the_chance_of_a_cheaper_day_from_windows_like_it() -> None:
    frame, cv = _promotion_backtest(np.random.default_rng(3))
    calib = Calibration.from_backtest(cv.drop(columns="running"), frame, 14, 30)
    frame2, cv2 = _promotion_backtest(np.random.default_rng(4))
    running = cv2.groupby(["unique_id", "cutoff"])["running"].first()

    def stated_and_seen(c: Calibration) -> tuple[float, float]:
        out = c.replay(cv2.drop(columns="running"), frame2)
        out[["unique_id", "cutoff"]] = out["sku"].str.split("@", expand=True)
        out["cutoff"] = pd.to_datetime(out["cutoff"])
        on = out.set_index(["unique_id", "cutoff"]).index.map(running).to_numpy(bool)
        first = out.groupby("sku")["y"].transform("first")
        later = on & (out.groupby("sku").cumcount() > 0).to_numpy()
        return out["p_cheaper"][later].mean(), (out["y"] < first)[later].mean()

    stated, seen = stated_and_seen(calib)
    # a later day is cheaper than the first mostly when the promotion ended on the first day
    assert 0.05 < seen < 0.3
    assert stated == pytest.approx(seen, abs=0.04)
    # pooled with the windows outside a promotion, the stated chance was far under what came true
    for pool in calib.pools.values():
        pool.departure_quantiles = None
    pooled, _ = stated_and_seen(calib)
    assert seen - pooled > 0.05


def test_products_that_move_together_do_not_split_their_few_market_moves_into_classes() -> None:
    frame, cv = _promotion_backtest(np.random.default_rng(3))
    independent = Calibration.from_backtest(cv.drop(columns="running"), frame, 14, 30)
    assert independent.pools["model"].departure_quantiles is not None
    # sixty copies of one product: as many windows, the evidence of one product's
    one = [frame["unique_id"] == "P00", cv["unique_id"] == "P00"]
    copies = [
        pd.concat([part[keep].assign(unique_id=f"P{i:02d}") for i in range(60)])
        for part, keep in zip((frame, cv), one, strict=True)
    ]
    together = Calibration.from_backtest(copies[1].drop(columns="running"), copies[0], 14, 30)
    assert together.pools["all"].departure_quantiles is None
    assert together.pools["model"].departure_quantiles is None


def test_a_backtest_file_with_categories_lets_each_categorys_index_drive_its_products(
    tmp_path,
) -> None:
    """A price file's ``category`` column maps ``index:<category>`` drivers to its products, as
    training from the database does; without it those drivers drive nothing."""
    from procurement.data.importers import read_lenient
    from procurement.forecast.backtest import run_backtest

    rng = np.random.default_rng(5)
    n, lag = 300, 7
    dates = pd.date_range("2026-01-01", periods=n + lag, freq="D")
    index = {c: np.cumsum(rng.normal(0, 0.015, n + lag)) for c in ("metal", "grain")}
    drivers = pd.concat(
        pd.DataFrame({"sku": f"index:{c}", "date": dates, "price": 100 * np.exp(v)})
        for c, v in index.items()
    )
    rows = []
    for i in range(8):
        cat = ("metal", "grain")[i % 2]
        # the supplier's price list follows its category's index a week late
        log_p = np.log(20 + 10 * i) + index[cat][:n] + rng.normal(0, 0.002, n)
        rows.append(
            pd.DataFrame(
                {"sku": f"P{i}", "date": dates[lag:], "price": np.exp(log_p), "category": cat}
            )
        )
    path = tmp_path / "prices.csv"
    pd.concat(rows).to_csv(path, index=False, date_format="%Y-%m-%d")
    prices = read_lenient(path).frame
    assert prices.loc[prices["sku"] == "P1", "category"].eq("grain").all()
    drv = drivers.rename(columns={"sku": "name", "price": "value"})
    with_cats = run_backtest(prices, 7, 2, drv).metrics
    without = run_backtest(prices.drop(columns=["category"]), 7, 2, drv).metrics
    assert with_cats["model"]["mase_vs_naive"] < 0.8 * without["model"]["mase_vs_naive"]


def test_the_95_band_holds_the_80_band_where_its_adapted_quantile_came_out_narrower() -> None:
    pool = PoolCalibration(
        sigma=[1.0, 1.0, 1.0],
        q={80: 1.0, 95: 2.0},
        diff_quantiles=[[0.0] * len(GRID)] * 3,
        change_bias=[0.0] * 3,
        n_scores=30,
        # each level adapted to its own misses on few errors: at the second step the 95%
        # quantile fell below the 80% one (one product, its first backtest fold)
        q_h={80: [1.0, 1.5, 1.5], 95: [2.0, 1.2, 2.5]},
    )
    calib = Calibration(scale={"A": 1.0}, pools={"all": pool})
    fc = pd.DataFrame(
        {"sku": "A", "date": pd.date_range("2026-01-05", periods=3), "y_pred": [10.0, 10.0, 10.0]}
    )
    out = calib.apply(fc)
    assert (out["lo_95"] <= out["lo_80"]).all() and (out["hi_95"] >= out["hi_80"]).all()
    assert out["hi_80"].tolist() == [11.0, 11.5, 11.5]
    assert out["hi_95"].tolist() == [12.0, 11.5, 12.5]
