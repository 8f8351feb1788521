"""Model drift as pure functions of DataFrames.

* **Data drift**: the population stability index (PSI) of each input of the price model between
  the training window and the latest weeks. The inputs are computed here from prices, drivers and
  sales in a scale-free form (change from the previous day, level against the trailing 90 days,
  volatility of the last two weeks), so the check does not depend on the forecaster's internals and one product's
  price level does not hide another's: a price level that jumps shows up in ``price_vs_90d``, a
  market turning volatile in ``price_change`` and ``volatility_14d``, a driver that moves out of
  its usual moves in ``driver_change`` (pooled over the drivers).
* **Concept drift**: the error of stored forecasts against the prices that came in (MASE, scaled
  like the backtest's: by each product's mean absolute one-day change), divided by the backtest
  MASE of the model that made them. About 1 while the model does as well as its backtest promised.

PSI reads: < 0.1 no shift, 0.1 to 0.25 moderate, > 0.25 significant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

PSI_BINS = 10
_EPS = 1e-4
LEVEL_WINDOW = 90
VOL_WINDOW = 14


def psi(
    reference: np.ndarray | pd.Series, current: np.ndarray | pd.Series, bins: int = PSI_BINS
) -> float:
    """Population stability index of ``current`` against ``reference``, on the reference's
    quantile bins (open-ended first and last bin). NaN when either side has no finite values."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    e = np.maximum(e / len(ref), _EPS)
    a = np.maximum(a / len(cur), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _series_features(df: pd.DataFrame, key: str, value: str, prefix: str) -> pd.DataFrame:
    """Per series: log change from the previous observation and log level against the mean of the
    trailing ``LEVEL_WINDOW`` observations (both free of the series' own scale)."""
    d = df[[key, "date", value]].dropna().sort_values([key, "date"])
    d = d[d[value] > 0]
    logv = np.log(d[value].astype(float))
    g = logv.groupby(d[key].to_numpy())
    out = pd.DataFrame({key: d[key].to_numpy(), "date": pd.to_datetime(d["date"]).to_numpy()})
    out[f"{prefix}_change"] = (logv - g.shift(1)).to_numpy()
    trailing = g.transform(lambda s: s.shift(1).rolling(LEVEL_WINDOW, min_periods=20).mean())
    out[f"{prefix}_vs_90d"] = (logv - trailing).to_numpy()
    return out


def features(
    prices: pd.DataFrame,
    drivers: pd.DataFrame | None = None,
    sales: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Long frame ``date, feature, value`` of the monitored inputs.

    ``prices``: sku, date, price; ``drivers``: name, date, value; ``sales``: sku, date, quantity.
    """
    parts = []
    p = _series_features(prices, "sku", "price", "price")
    change = p["price_change"]
    p["volatility_14d"] = (
        change.abs()
        .groupby(p["sku"].to_numpy())
        .transform(lambda s: s.rolling(VOL_WINDOW, min_periods=10).mean())
        # scaled by the product's own typical move, so volatile and calm products are comparable
        / change.abs().groupby(p["sku"].to_numpy()).transform("median").replace(0, np.nan)
    )
    parts.append(
        p.melt(
            id_vars="date",
            value_vars=["price_change", "price_vs_90d", "volatility_14d"],
            var_name="feature",
        )
    )
    if drivers is not None and len(drivers):
        # pooled over the drivers: one exchange rate's few recent days alone are too few to judge
        # (their levels are left out: a handful of random walks wander far in a few weeks by chance)
        f = _series_features(drivers, "name", "value", "driver")
        parts.append(f.melt(id_vars="date", value_vars=["driver_change"], var_name="feature"))
    if sales is not None and len(sales):
        s = sales[["sku", "date", "quantity"]].dropna().sort_values(["sku", "date"])
        q = s["quantity"].astype(float)
        trailing = q.groupby(s["sku"].to_numpy()).transform(
            lambda x: x.shift(1).rolling(LEVEL_WINDOW, min_periods=20).mean()
        )
        parts.append(
            pd.DataFrame(
                {
                    "date": pd.to_datetime(s["date"]).to_numpy(),
                    "feature": "sales_vs_90d",
                    "value": (np.log1p(q) - np.log1p(trailing)).to_numpy(),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["value"].astype(float))].reset_index(drop=True)


@dataclass(frozen=True)
class DataDrift:
    psi: dict[str, float]  # feature -> PSI
    reference: tuple[dt.date, dt.date]
    recent: tuple[dt.date, dt.date]

    @property
    def score(self) -> float:
        """The largest PSI over the features (0 when none could be computed)."""
        vals = [v for v in self.psi.values() if np.isfinite(v)]
        return max(vals) if vals else 0.0


def data_drift(
    feats: pd.DataFrame,
    train_start: dt.date,
    train_end: dt.date,
    recent_days: int = 28,
) -> DataDrift:
    """PSI of every feature: the training window (without the latest ``recent_days``) against the
    latest ``recent_days`` up to the newest date in ``feats``."""
    dates = pd.to_datetime(feats["date"])
    last = dates.max().date()
    recent_start = last - dt.timedelta(days=recent_days - 1)
    ref_end = min(train_end, recent_start - dt.timedelta(days=1))
    ref = feats[(dates >= pd.Timestamp(train_start)) & (dates <= pd.Timestamp(ref_end))]
    cur = feats[dates >= pd.Timestamp(recent_start)]
    out = {}
    for name in sorted(feats["feature"].unique()):
        out[name] = psi(
            ref.loc[ref["feature"] == name, "value"], cur.loc[cur["feature"] == name, "value"]
        )
    return DataDrift(
        {k: v for k, v in out.items() if np.isfinite(v)},
        (train_start, ref_end),
        (recent_start, last),
    )


def product_scale(prices: pd.DataFrame) -> pd.Series:
    """Mean absolute one-day change per sku (the naive forecast's in-sample error), the MASE scale."""
    d = prices.sort_values(["sku", "date"])
    diff = d.groupby("sku")["price"].diff().abs()
    scale = diff.groupby(d["sku"]).mean()
    fallback = d["price"].abs().groupby(d["sku"]).mean() * 0.01
    return scale.where(scale > 0, fallback).fillna(1.0)


@dataclass(frozen=True)
class LiveError:
    mase: float  # NaN without actuals
    coverage_80: float
    n: int  # forecasts with an actual price


def live_error(forecasts: pd.DataFrame, actuals: pd.DataFrame, scale: pd.Series) -> LiveError:
    """Error of stored ``forecasts`` (sku, date, y_pred, lo_80, hi_80) on the ``actuals`` (sku,
    date, price) that arrived: MASE (mean absolute error per product over its scale, averaged
    over products) and the share inside the 80% interval."""
    f = forecasts.assign(date=pd.to_datetime(forecasts["date"]))
    a = actuals[["sku", "date", "price"]].assign(date=pd.to_datetime(actuals["date"]))
    m = f.merge(a, on=["sku", "date"], how="inner")
    if m.empty:
        return LiveError(float("nan"), float("nan"), 0)
    err = (m["price"] - m["y_pred"]).abs()
    per_product = err.groupby(m["sku"]).mean() / scale.reindex(
        err.groupby(m["sku"]).mean().index
    ).fillna(1.0)
    covered = (m["price"] >= m["lo_80"]) & (m["price"] <= m["hi_80"])
    return LiveError(float(per_product.mean()), float(covered.mean()), len(m))
