"""The global LightGBM price model: one mlforecast ``MLForecast`` over every product of a company,
plus what it needs to build future driver features (tails of drivers and sales)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import RollingMean, RollingStd
from mlforecast.target_transforms import Differences

from procurement.forecast.calibration import (
    Calibration,
    add_naive,
    backtest_metrics,
    choose_shrinkage,
)
from procurement.forecast.features import FreqSpec, driver_features, regularize, spec_for
from procurement.forecast.transforms import LocalScale

LEVELS = (80, 95)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class ModelParams:
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    conformal_windows: int = 6
    max_history: int | None = 730  # periods per series used for training
    max_train_rows: int = 1_200_000  # LightGBM sees a random sample of at most this many rows
    backtest_series: int = 1_000  # the calibration backtest runs on a sample of this many series
    seed: int = 42

    def lgbm(self) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=100,
            subsample=0.7,
            subsample_freq=1,
            colsample_bytree=0.8,
            reg_lambda=1.0,
            max_bin=127,
            random_state=self.seed,
            n_jobs=2,
            verbose=-1,
        )


def make_forecaster(spec: FreqSpec, params: ModelParams) -> MLForecast:
    short, long_ = spec.windows
    return MLForecast(
        models={"lgbm": params.lgbm()},
        freq=spec.freq,
        lags=list(spec.lags),
        lag_transforms={1: [RollingMean(short), RollingMean(long_), RollingStd(long_)]},
        date_features=list(spec.date_features),
        # Prices are close to random walks: model the change, scaled per product, not the level.
        target_transforms=[Differences([1]), LocalScale()],
        num_threads=1,
    )


@dataclass
class TrainingData:
    """Everything a model is fitted on; ``prices`` has unique_id, ds, y (any regular frequency)."""

    prices: pd.DataFrame
    drivers: pd.DataFrame | None = None  # name, ds, value
    sales: pd.DataFrame | None = None  # unique_id, ds, quantity
    categories: Mapping[str, str] | None = None  # unique_id -> category


@dataclass
class PriceModel:
    fcst: MLForecast
    spec: FreqSpec
    horizon: int
    last_date: pd.Timestamp
    features: list[str]
    exog: list[str]
    drivers_tail: pd.DataFrame | None
    sales_tail: pd.DataFrame | None
    categories: dict[str, str]
    last_price: dict[str, float]
    calibration: Calibration | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    shrink: float = 1.0  # forecast = naive + shrink * (model - naive), chosen on the backtest

    @property
    def products(self) -> list[str]:
        return list(self.last_price)

    def future_exog(
        self, h: int, overrides: Mapping[str, float] | None = None, ids: list[str] | None = None
    ) -> pd.DataFrame | None:
        if not self.exog:
            return None
        products = self.products if ids is None else [p for p in ids if p in self.last_price]
        dates = pd.date_range(self.last_date, periods=h + 1, freq=self.spec.freq)[1:]
        keys = pd.DataFrame(
            {
                "unique_id": np.repeat(np.array(products, dtype=object), h),
                "ds": np.tile(dates, len(products)),
            }
        )
        sales = self.sales_tail
        if ids is not None and sales is not None:
            sales = sales[sales["unique_id"].isin(products)]
        x = driver_features(
            keys, self.spec, self.drivers_tail, self.categories, sales, self.last_date, overrides
        )
        for col in self.exog:
            if col not in x.columns:
                x[col] = np.nan
        return x[["unique_id", "ds", *self.exog]]

    def predict(
        self,
        h: int | None = None,
        overrides: Mapping[str, float] | None = None,
        ids: list[str] | None = None,
    ) -> pd.DataFrame:
        """``h`` forecasts per product with 80% and 95% conformal intervals.

        ``overrides`` are what-if factors on the drivers' future values, e.g. ``{"fx": 1.05}``.
        """
        h = h or self.horizon
        x = self.future_exog(h, overrides, ids)
        fc = self.fcst.predict(h, X_df=x, ids=ids).rename(columns={"lgbm": "y_pred"})
        fc = fc.rename(columns={"unique_id": "sku", "ds": "date"})
        last = fc["sku"].map(self.last_price).to_numpy()
        fc["y_pred"] = last + self.shrink * (fc["y_pred"].to_numpy() - last)
        if self.calibration is None:
            raise RuntimeError("model has no calibration; retrain it")
        return self.calibration.apply(fc)

    def feature_importance(self) -> pd.DataFrame:
        model = self.fcst.models_["lgbm"]
        imp = model.booster_.feature_importance(importance_type="gain")
        df = pd.DataFrame({"feature": model.booster_.feature_name(), "gain": imp})
        df["share"] = df["gain"] / max(df["gain"].sum(), 1e-12)
        return df.sort_values("gain", ascending=False, ignore_index=True)


def prepare(
    data: TrainingData, freq: str, max_history: int | None
) -> tuple[pd.DataFrame, FreqSpec, list[str]]:
    """Regular calendar, history cap and exogenous columns; returns (frame, spec, exog names)."""
    spec = spec_for(freq)
    panel = regularize(data.prices, freq)
    if max_history:
        panel = panel.groupby("unique_id", sort=False).tail(max_history).reset_index(drop=True)
    last = panel["ds"].max()
    feats = driver_features(panel, spec, data.drivers, data.categories, data.sales, last)
    exog = [c for c in feats.columns if c not in ("unique_id", "ds")]
    # driver_features keeps the row order of its keys: no join needed
    frame = pd.concat([panel, feats[exog].set_axis(panel.index)], axis=1) if exog else panel
    return frame, spec, exog


def fit_price_model(
    data: TrainingData,
    freq: str,
    horizon: int,
    params: ModelParams | None = None,
    progress: Progress | None = None,
) -> PriceModel:
    """Fit one global LightGBM model over all series in ``data`` and calibrate its intervals.

    A rolling-origin backtest over the last ``conformal_windows`` x ``horizon`` periods (mlforecast
    ``cross_validation``) gives out-of-sample errors; they calibrate the intervals and the
    buy-day confidence (see ``calibration.py``) and are the metrics stored with the model.
    """
    params = params or ModelParams()
    say = progress or (lambda f, m: None)
    say(0.05, "building features")
    frame, spec, exog = prepare(data, freq, params.max_history)
    min_len = max(spec.lags) + max(spec.windows) + horizon * (params.conformal_windows + 1) + 2
    lengths = frame.groupby("unique_id").size()
    short = lengths[lengths < min_len]
    if len(short) == len(lengths):
        raise ValueError(f"every series is shorter than {min_len} periods; need more history")
    if len(short):
        frame = frame[~frame["unique_id"].isin(short.index)].reset_index(drop=True)
    train = frame.drop(columns=["observed"])
    n_feat = len(exog) + len(spec.lags) + 3 + len(spec.date_features)
    say(0.15, f"backtesting on the last {params.conformal_windows} x {horizon} periods")
    fcst = make_forecaster(spec, params)
    ids = frame["unique_id"].unique()
    if len(ids) > params.backtest_series:
        # pooled calibration needs many errors, not every product: a random sample is enough
        rng = np.random.default_rng(params.seed)
        ids = rng.choice(ids, params.backtest_series, replace=False)
        cv_train = train[train["unique_id"].isin(ids)]
        cv_frame = frame[frame["unique_id"].isin(ids)]
    else:
        cv_train, cv_frame = train, frame
    cv = fcst.cross_validation(
        cv_train,
        n_windows=params.conformal_windows,
        h=horizon,
        refit=False,
        static_features=[],
    )
    cv = cv.merge(cv_frame[["unique_id", "ds", "observed"]], on=["unique_id", "ds"], how="left")
    cv = add_naive(cv, cv_frame)
    shrink = choose_shrinkage(cv, cv_frame)
    cv["lgbm_raw"] = cv["lgbm"]
    cv["lgbm"] = cv["naive"] + shrink * (cv["lgbm"] - cv["naive"])
    calib = Calibration.from_backtest(cv, cv_frame, horizon, spec.vol_window, all_frame=frame)
    metrics = backtest_metrics(cv, cv_frame, spec.season)
    metrics["shrink_to_naive"] = shrink
    say(0.5, f"training LightGBM on {len(train):,} rows x {n_feat} features")
    fcst = make_forecaster(spec, params)
    keep = max(max(spec.lags), max(spec.windows)) + 1
    feats = fcst.preprocess(train, static_features=[], keep_last_n=keep)
    if len(feats) > params.max_train_rows:
        # rows of a global model are highly redundant; a random sample trains as well, faster
        feats = feats.sample(params.max_train_rows, random_state=params.seed)
    x = feats[fcst.ts.features_order_]
    fcst.fit_models(x, feats["y"].to_numpy())
    del feats, x
    say(0.9, "model trained")
    last_date = frame["ds"].max()
    tail_start = last_date - pd.tseries.frequencies.to_offset(spec.freq) * (
        max(spec.windows) + max(spec.driver_lags) + 5
    )
    drivers_tail = None
    if data.drivers is not None and len(data.drivers):
        drivers_tail = data.drivers[data.drivers["ds"] >= tail_start - pd.Timedelta(days=31)].copy()
    sales_tail = None
    if data.sales is not None and len(data.sales):
        sales_tail = data.sales[data.sales["ds"] >= tail_start].copy()
    last_price = frame.groupby("unique_id", sort=True)["y"].last()
    return PriceModel(
        fcst=fcst,
        spec=spec,
        horizon=horizon,
        last_date=last_date,
        features=list(fcst.ts.features_order_),
        exog=exog,
        drivers_tail=drivers_tail,
        sales_tail=sales_tail,
        categories=dict(data.categories or {}),
        last_price={k: float(v) for k, v in last_price.items()},
        calibration=calib,
        metrics=metrics,
        shrink=shrink,
    )


def describe_params(params: ModelParams) -> dict[str, Any]:
    return {**params.__dict__, "lgbm": params.lgbm().get_params()}
