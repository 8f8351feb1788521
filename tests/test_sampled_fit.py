"""The retrain's large-catalog path: a sampled fit built from groups of series gives the
features and the prediction state a full ``preprocess`` would, and every lag transform's
update needs only the history the fitted model keeps."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from coreforecast.grouped_array import GroupedArray

from procurement.data.synthetic import generate
from procurement.forecast import model as M
from procurement.forecast.features import spec_for
from procurement.forecast.transforms import _LevelTransform


def _train(n: int = 24, days: int = 320) -> pd.DataFrame:
    syn = generate(n, days, seed=5, end=dt.date(2026, 6, 30))
    p = syn.prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    prices = p[["unique_id", "ds", "y"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
    frame, _, _, _ = M.prepare(M.TrainingData(prices=prices), "D", None)
    return frame[["unique_id", "ds", "y"]]


@pytest.mark.parametrize("make", [M.make_forecaster, M.make_level_forecaster])
def test_sampled_fit_predicts_as_a_full_preprocess_would(make, monkeypatch) -> None:
    spec = spec_for("D")
    train = _train()
    params = M.ModelParams(n_estimators=20, max_train_rows=len(train) // 4)
    monkeypatch.setattr(M, "SAMPLE_CHUNK_ROWS", len(train) // 5)  # several groups of series
    seen: list[pd.DataFrame] = []
    fit_models = M.MLForecast.fit_models

    def spy(self, X, y, *a, **k):  # the rows the sampled path trains on
        seen.append(X.assign(y=y))
        return fit_models(self, X, y, *a, **k)

    monkeypatch.setattr(M.MLForecast, "fit_models", spy)
    sampled = M._fit_sampled(make(spec, params.for_rows(len(train))), train, spec, params)
    full = make(spec, params)
    feats = full.preprocess(train, static_features=[], keep_last_n=M.history_to_keep(full, spec))
    (X,) = seen
    assert 0.8 * params.max_train_rows < len(X) <= 1.05 * params.max_train_rows
    # the groups' feature rows are the whole table's rows
    cols = full.ts.features_order_
    assert list(X.columns[: len(cols)]) == cols
    # (to 1e-6: a group's cumulative sums round differently from the whole table's)
    found = X.round(6).merge(
        feats[[*cols, "y"]].round(6).drop_duplicates(), how="left", indicator=True
    )
    assert (found["_merge"] == "both").all()
    # a large catalog's schedule: half the trees at twice the rate
    assert sampled.models_["lgbm"].n_estimators == params.n_estimators // 2
    assert sampled.models_["lgbm"].learning_rate == 2 * params.learning_rate
    # and the model's metadata records the schedule it was trained with
    assert M.describe_params(params, sampled)["lgbm"]["n_estimators"] == params.n_estimators // 2
    # the prediction state: the same models on the full preprocess give the same forecast
    full.models_ = sampled.models_
    a = sampled.predict(14)
    b = full.predict(14)
    pd.testing.assert_frame_equal(a, b)
    assert np.isfinite(a["lgbm"]).all()


@pytest.mark.parametrize("make", [M.make_forecaster, M.make_level_forecaster])
def test_rows_sampled_inside_preprocess_are_those_drawn_from_its_whole_output(make) -> None:
    spec = spec_for("D")
    train = _train()
    params = M.ModelParams()
    keep = M.history_to_keep(make(spec, params), spec)
    whole = make(spec, params).preprocess(train, static_features=[], keep_last_n=keep)
    take = np.sort(np.random.default_rng(7).choice(len(whole), round(0.1 * len(whole)), False))
    fcst = make(spec, params)
    sample = M._SampleRows(fcst, 0.1, np.random.default_rng(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no series dropped whole
        part = fcst.preprocess(train, static_features=[], keep_last_n=keep)
    cols = [*whole.columns]
    assert [*part.columns] == cols  # no column made of the mark
    pd.testing.assert_frame_equal(
        part[sample.sampled].reset_index(drop=True), whole.iloc[take].reset_index(drop=True)
    )
    # the table assembled: the sample and each series' last row, not every row
    assert len(part) <= len(take) + train["unique_id"].nunique()


@pytest.mark.parametrize("make", [M.make_forecaster, M.make_level_forecaster])
def test_each_transform_update_needs_only_the_history_the_model_keeps(make) -> None:
    spec = spec_for("D")
    fcst = make(spec, M.ModelParams())
    keep = M.history_to_keep(fcst, spec)
    rng = np.random.default_rng(3)
    days = 3 * keep
    series = []
    for _ in range(80):  # promotions of every depth, some at the edge of being found
        x = np.cumsum(rng.normal(0, 0.05, days)) + rng.normal(0, 0.2, days)
        x += 0.2 * np.sin(2 * np.pi * np.arange(days) / 7)
        cycle = int(rng.integers(14, 60))
        for start in range(int(rng.integers(0, cycle)), days, cycle):
            x[start : start + int(rng.integers(1, 5))] -= rng.uniform(0.1, 1.5)
        series.append(x)
    data = np.concatenate(series)
    indptr = np.arange(0, len(data) + 1, days, dtype=np.int32)
    tails = np.concatenate([s[-keep:] for s in series])
    tail_ptr = np.arange(0, len(tails) + 1, keep, dtype=np.int32)
    checked = 0
    for name, tfm in fcst.ts.transforms.items():
        if not isinstance(tfm, _LevelTransform):
            continue
        stat = tfm._stat(data, indptr)  # over the whole history, as the training rows saw it
        want = stat[indptr[1:] - tfm._lag_periods]
        got = tfm.update(GroupedArray(tails, tail_ptr))
        np.testing.assert_allclose(got, want, err_msg=name)
        checked += 1
    assert checked >= 2


def test_backtest_fits_the_schedule_of_the_final_fit(monkeypatch) -> None:
    """A sampled fit trains fewer trees at a higher rate; the calibration backtest must judge
    that model, not the slower one of a small catalog."""
    train = _train(16, 300)
    fitted: list[tuple[int, float]] = []
    fit = M.lgb.LGBMRegressor.fit

    def spy(self, *a, **k):
        fitted.append((self.n_estimators, self.learning_rate))
        return fit(self, *a, **k)

    monkeypatch.setattr(M.lgb.LGBMRegressor, "fit", spy)
    base = M.ModelParams(n_estimators=20, learning_rate=0.05)
    for params, want in [
        (base, (20, 0.05)),  # small: every row, the slower schedule
        (M.dataclasses.replace(base, max_train_rows=len(train) // 3), (10, 0.1)),
    ]:
        fitted.clear()
        M.fit_price_model(M.TrainingData(prices=train), "D", 14, params)
        assert len(fitted) >= 3  # backtest of both models, then the final fits
        assert set(fitted) == {want}


def test_fits_side_by_side_give_the_models_of_fits_one_after_the_other(monkeypatch) -> None:
    train = _train(16, 300)
    params = M.ModelParams(n_estimators=20, max_train_rows=len(train) // 3)
    together = M.fit_price_model(M.TrainingData(prices=train), "D", 14, params)
    ran: list[str] = []

    def in_turn(jobs):
        ran.extend(jobs)
        return M.in_turn(jobs)

    monkeypatch.setattr(M, "side_by_side", in_turn)
    alone = M.fit_price_model(M.TrainingData(prices=train), "D", 14, params)
    assert ran.count("level") == 2  # the backtest and the final fit both had two models
    pd.testing.assert_frame_equal(together.predict(), alone.predict())
    assert together.metrics == alone.metrics


@pytest.mark.parametrize("make", [M.make_forecaster, M.make_level_forecaster])
def test_one_column_of_a_statistic_equals_that_column_of_the_whole_matrix(make) -> None:
    """Prediction steps compute only the column they read (``_stat_at``)."""
    spec = spec_for("D")
    fcst = make(spec, M.ModelParams())
    rng = np.random.default_rng(8)
    width = 200
    rows = np.cumsum(rng.normal(0, 0.05, (60, width)), axis=1)
    for r in range(0, 60, 3):  # promotions (and drops of changes) at random places, some rows none
        for start in rng.integers(0, width, int(rng.integers(0, 6))):
            rows[r, start : start + 3] -= rng.uniform(0.3, 1.5)
    rows[1:4] = 0.0  # flat rows: no drop at all
    changes = np.diff(rows, axis=1, prepend=0.0) * 10  # the change model's scaled changes
    checked = 0
    for name, tfm in fcst.ts.transforms.items():
        if not (isinstance(tfm, _LevelTransform) and tfm._has_rows):
            continue
        data = rows if getattr(tfm, "on_level", False) else changes
        whole = tfm._stat_rows(data)
        for col in [0, 1, 7, 56, 120, width - 2, width - 1]:
            np.testing.assert_allclose(
                tfm._stat_at(data, col), whole[:, col], err_msg=f"{name} {col}"
            )
        checked += 1
    assert checked >= 2


def test_prepare_in_groups_of_series_gives_the_whole_table(monkeypatch) -> None:
    """A large catalog is put on its calendar and given its drivers a group of series at a
    time: the same table as all at once, whatever the input order, with products without
    sales and series with gaps."""
    from conftest import training_data

    data = training_data(generate(30, 200, seed=9, end=dt.date(2026, 6, 30)))
    rng = np.random.default_rng(2)
    prices = data.prices.drop(index=rng.choice(len(data.prices), 300, replace=False))  # gaps
    prices = prices.sample(frac=1.0, random_state=1)  # any order
    sales = data.sales[~data.sales["unique_id"].isin(prices["unique_id"].unique()[:8])]
    data = M.TrainingData(prices, data.drivers, sales, data.categories)
    whole, _, exog, _ = M.prepare(data, "D", 150)
    monkeypatch.setattr(M, "PREPARE_CHUNK_ROWS", 700)  # groups of about 4 series
    grouped, _, exog_grouped, _ = M.prepare(data, "D", 150)
    assert exog_grouped == exog and any(c.startswith("demand") for c in exog)
    pd.testing.assert_frame_equal(grouped, whole)
    assert whole["demand_ratio_l1"].isna().sum() >= 8 * 100  # the products without sales


def test_drivers_computed_per_run_of_series_give_the_model_of_the_whole_table(monkeypatch) -> None:
    """A large catalog's drivers and demand columns are computed for each group of series as
    it is turned into features (``SeriesExog``), never for the whole table at once: the
    fitted model, its backtest and its forecasts are those of the whole-table path."""
    from conftest import training_data

    data = training_data(generate(24, 320, seed=4, end=dt.date(2026, 6, 30)))
    params = M.ModelParams(n_estimators=20, max_train_rows=len(data.prices) // 3)
    monkeypatch.setattr(M, "SAMPLE_CHUNK_ROWS", len(data.prices) // 5)
    fits = {}
    for lazy in (True, False):
        monkeypatch.setattr(M, "LAZY_EXOG_ROWS", 0 if lazy else 10**12)
        fits[lazy] = M.fit_price_model(data, "D", 14, params)
    lazy, whole = fits[True], fits[False]
    assert lazy.exog == whole.exog and any(c.startswith("demand") for c in lazy.exog)
    assert lazy.features == whole.features
    assert lazy.metrics == whole.metrics
    pd.testing.assert_frame_equal(lazy.predict(), whole.predict())
    what_if = {lazy.exog[0].split("_")[1]: 1.1}
    pd.testing.assert_frame_equal(lazy.predict(overrides=what_if), whole.predict(overrides=what_if))


def test_promotion_features_of_each_forecast_step_match_the_whole_history(monkeypatch) -> None:
    """A recursive forecast's steps move each series' tail on by one period; the promotion
    starts are then updated from the previous step's (only the new column computed). Every
    step's PromoSince and PromoDue must equal the statistic over the whole history."""
    from procurement.forecast import transforms as T

    spec = spec_for("D")
    fcst = M.make_level_forecaster(spec, M.ModelParams())
    promo = [t for t in fcst.ts.transforms.values() if isinstance(t, T.PromoSince | T.PromoDue)]
    assert len(promo) == 2
    keep = M.history_to_keep(fcst, spec)
    rng = np.random.default_rng(11)
    days, steps, n = 3 * keep, 20, 60
    series = []
    for _ in range(n):
        x = 0.2 * np.sin(2 * np.pi * np.arange(days) / 7) + rng.normal(0, 0.05, days)
        cycle = int(rng.integers(14, 50))
        for s in range(int(rng.integers(0, cycle)), days, cycle):
            x[s : s + int(rng.integers(1, 5))] -= rng.uniform(0.3, 1.5)
            if rng.random() < 0.5:  # a second cut a few days in: a promotion, not a new one
                d = int(rng.integers(2, 10))
                x[s + d : s + d + 2] -= rng.uniform(0.3, 1.5)
        series.append(x)
    incremental = []
    step_flags = T._next_promo_flags
    monkeypatch.setattr(T, "_next_promo_flags", lambda *a: incremental.append(1) or step_flags(*a))
    for step in range(steps):
        end = days - steps + step + 1
        tails = np.concatenate([s[end - keep : end] for s in series])
        ga = GroupedArray(tails, np.arange(0, n * keep + 1, keep, dtype=np.int32))
        for tfm in promo:
            whole = np.concatenate([s[:end] for s in series])
            ptr = np.arange(0, n * end + 1, end, dtype=np.int32)
            want = tfm._stat(whole, ptr)[ptr[1:] - tfm._lag_periods]
            np.testing.assert_array_equal(tfm.update(ga), want, err_msg=f"{tfm} step {step}")
    assert len(incremental) == steps - 1  # every step after the first, once for both
    some = promo[0].update(ga)
    assert (some < 63).any() and (some == 63).sum() < n  # promotions were found


def test_a_sampled_retrain_checks_its_whole_table_for_gaps_once(monkeypatch) -> None:
    """The change and the level model are fitted on the same series and dates: mlforecast's
    check for gaps and duplicates runs over the whole table once, not once per model (2 s of CPU
    per run at 10,000 products), and never not at all; a sampled fit left to check its own table
    still refuses one with a gap."""
    train = _train()
    checked: list[int] = []
    validate = M.MLForecast._validate_data

    def spy(self, df, *a, **k):
        checked.append(len(df))
        return validate(self, df, *a, **k)

    monkeypatch.setattr(M.MLForecast, "_validate_data", spy)
    choose = M.choose_blend

    def both_models(*a, **k):  # whatever the backtest found, fit the level model too
        trust, _, held_out = choose(*a, **k)
        return trust, (0.5, 0.5), held_out

    monkeypatch.setattr(M, "choose_blend", both_models)
    params = M.ModelParams(
        n_estimators=10, max_train_rows=len(train) // 4, conformal_windows=2, backtest_series=10
    )  # the backtest checks its own, smaller table
    model = M.fit_price_model(M.TrainingData(prices=train), "D", 14, params)
    assert model.level_fcst is not None
    assert checked.count(len(train)) == 1
    gap = train.drop(index=train.index[5])  # one day of one series missing
    with pytest.raises(ValueError, match=r"(?i)gap|missing|continu"):
        M._fit_sampled(M.make_level_forecaster(spec_for("D"), params), gap, spec_for("D"), params)
