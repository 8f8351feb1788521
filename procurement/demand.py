"""How much each product will sell, and what that means for its stock.

One global LightGBM model (mlforecast) over the daily quantities of every product with enough
history, like the price model; products with little history get the mean of their recent days.
A rolling-origin backtest on the last windows gives the model's error next to that fallback's;
when the model is not better, every product gets the fallback (the honest choice). The error of
the chosen method per product sets its safety stock.

Inventory arithmetic (safety stock, reorder point, the day stock runs out) is plain numpy on
per-product Series, so it is exact on tiny cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import RollingMean
from mlforecast.target_transforms import LocalStandardScaler
from scipy.stats import norm

RECENT_DAYS = 28  # the fallback: mean of the last four weeks
MIN_HISTORY = 90  # days of sales a product needs to be forecast by the model
BACKTEST_WINDOWS = 2


@dataclass(frozen=True)
class DemandForecast:
    """Daily demand per product from ``start`` for ``horizon`` days."""

    daily: pd.DataFrame  # sku, date, quantity
    sigma: pd.Series  # sku -> standard deviation of one day's forecast error
    method: pd.Series  # sku -> "model" | "recent mean"
    metrics: dict[str, Any] = field(default_factory=dict)

    def mean(self) -> pd.Series:
        """Mean daily demand over the horizon, per sku."""
        return self.daily.groupby("sku")["quantity"].mean()


def _panel(sales: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Complete daily calendar per product from its first sale to ``end``; days without a
    recorded sale sold nothing."""
    s = sales.assign(date=pd.to_datetime(sales["date"]))
    s = s[s["date"] <= end].groupby(["sku", "date"], as_index=False)["quantity"].sum()
    frames = []
    for sku, g in s.groupby("sku", sort=True):
        days = pd.date_range(g["date"].min(), end, freq="D")
        q = g.set_index("date")["quantity"].reindex(days, fill_value=0.0)
        frames.append(pd.DataFrame({"unique_id": sku, "ds": days, "y": q.to_numpy(float)}))
    if not frames:
        return pd.DataFrame(
            {
                "unique_id": pd.Series([], dtype=object),
                "ds": pd.Series([], dtype="datetime64[ns]"),
                "y": pd.Series([], dtype=float),
            }
        )
    return pd.concat(frames, ignore_index=True)


def _forecaster(n_estimators: int, seed: int) -> MLForecast:
    model = lgb.LGBMRegressor(
        n_estimators=n_estimators,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )
    return MLForecast(
        models={"lgbm": model},
        freq="D",
        lags=[1, 7, 14, 28],
        lag_transforms={1: [RollingMean(7), RollingMean(28)], 7: [RollingMean(4)]},
        date_features=["dayofweek"],
        target_transforms=[LocalStandardScaler()],
        num_threads=1,
    )


def _recent_mean(panel: pd.DataFrame, cutoff: pd.Timestamp) -> pd.Series:
    recent = panel[
        (panel["ds"] <= cutoff) & (panel["ds"] > cutoff - pd.Timedelta(RECENT_DAYS, "D"))
    ]
    return recent.groupby("unique_id")["y"].mean()


def forecast_demand(
    sales: pd.DataFrame,
    end: object,
    horizon: int,
    *,
    n_estimators: int = 100,
    seed: int = 42,
    skus: list[str] | None = None,
) -> DemandForecast:
    """Forecast daily demand for the ``horizon`` days after ``end`` from ``sales`` (sku, date,
    quantity) up to ``end``. ``skus``: products to cover even without sales (they get zero)."""
    end = pd.Timestamp(end)
    panel = _panel(sales, end)
    dates = pd.date_range(end + pd.Timedelta(1, "D"), periods=horizon, freq="D")
    all_skus = sorted(set(panel["unique_id"]) | set(skus or []))
    lengths = panel.groupby("unique_id").size()
    long = lengths[lengths >= MIN_HISTORY + BACKTEST_WINDOWS * horizon].index
    # every product starts with the fallback: recent mean, error = std of its recent days
    level = _recent_mean(panel, end).reindex(all_skus).fillna(0.0)
    recent = panel[panel["ds"] > end - pd.Timedelta(RECENT_DAYS, "D")]
    sigma = recent.groupby("unique_id")["y"].std().reindex(all_skus).fillna(0.0)
    method = pd.Series("recent mean", index=pd.Index(all_skus, name="sku"))
    daily = pd.DataFrame(
        {
            "sku": np.repeat(all_skus, horizon),
            "date": np.tile(dates, len(all_skus)),
            "quantity": np.repeat(level.to_numpy(float), horizon),
        }
    )
    metrics: dict[str, Any] = {"products": len(all_skus), "model_products": 0}
    if len(long) == 0:
        return DemandForecast(daily, sigma.rename_axis("sku"), method, metrics)

    train = panel[panel["unique_id"].isin(long)].reset_index(drop=True)
    cv = _forecaster(n_estimators, seed).cross_validation(
        train, n_windows=BACKTEST_WINDOWS, h=horizon, step_size=horizon
    )
    base = pd.concat(
        [
            cv.loc[cv["cutoff"] == c, ["unique_id"]].assign(
                base=lambda d, c=c: d["unique_id"].map(_recent_mean(train, c))
            )
            for c in cv["cutoff"].unique()
        ]
    )["base"]
    cv["base"] = base.to_numpy()
    err = cv["y"] - cv["lgbm"]
    denom = max(float(cv["y"].abs().sum()), 1e-9)
    wape_model = float(err.abs().sum() / denom)
    wape_base = float((cv["y"] - cv["base"]).abs().sum() / denom)
    use_model = wape_model < wape_base
    metrics.update(
        model_products=len(long) if use_model else 0,
        backtest_windows=BACKTEST_WINDOWS,
        horizon=horizon,
        wape_model=wape_model,
        wape_recent_mean=wape_base,
        method="model" if use_model else "recent mean",
    )
    chosen = cv["lgbm"] if use_model else cv["base"]
    rmse = (cv["y"] - chosen).pow(2).groupby(cv["unique_id"]).mean().pow(0.5)
    sigma.loc[rmse.index] = rmse.to_numpy()
    if use_model:
        fc = _forecaster(n_estimators, seed).fit(train).predict(horizon)
        fc["lgbm"] = fc["lgbm"].clip(lower=0.0)
        pred = fc.set_index(["unique_id", "ds"])["lgbm"]
        idx = pd.MultiIndex.from_arrays([daily["sku"], daily["date"]])
        found = pred.reindex(idx).to_numpy()
        daily["quantity"] = np.where(np.isnan(found), daily["quantity"], found)
        method.loc[list(long)] = "model"
    return DemandForecast(daily, sigma.rename_axis("sku"), method, metrics)


def safety_stock(sigma: pd.Series, lead_time: pd.Series, service_level: pd.Series) -> pd.Series:
    """z(service level) x daily error x sqrt(lead time): the stock that covers demand above the
    forecast during the lead time in that share of cycles."""
    z = norm.ppf(service_level.clip(0.5, 0.9999).to_numpy(float))
    return pd.Series(
        z * sigma.to_numpy(float) * np.sqrt(lead_time.clip(lower=0).to_numpy(float)),
        index=sigma.index,
    )


def days_until_below(stock: float, level: float, daily: np.ndarray) -> int | None:
    """First day (0: today) at whose end stock has fallen below ``level`` as ``daily`` demand
    is consumed; None if it stays above over the path, and past the path at its mean rate."""
    left = stock - np.cumsum(daily)
    below = np.flatnonzero(left < level - 1e-9)
    if len(below):
        return int(below[0])
    rate = float(np.mean(daily)) if len(daily) else 0.0
    if rate <= 0:
        return None
    extra = (left[-1] - level) / rate if len(left) else (stock - level) / rate
    return int(len(daily) + np.floor(extra))
