"""Calibrated uncertainty from out-of-sample backtest errors.

mlforecast's conformal intervals take quantiles of each series' own few backtest errors (with 3
windows that is 3 numbers per series and horizon step), which is too few for 80% and 95% bands.
For a global model we pool instead: errors are divided by each series' scale (its mean absolute
period-to-period change), pooled across all series per horizon step, and the split-conformal
quantile of that pool is scaled back per series. The same backtest gives the distribution of the
error of the forecast *change* from the first day, which is what the buy-day confidence needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

GRID = np.linspace(0.0, 1.0, 201)


def series_scale(frame: pd.DataFrame) -> pd.Series:
    """Mean absolute one-period change per series (the naive forecast's in-sample MAE)."""
    d = frame.groupby("unique_id", sort=False)["y"].diff().abs()
    scale = d.groupby(frame["unique_id"].to_numpy()).mean()
    fallback = frame["y"].abs().groupby(frame["unique_id"].to_numpy()).mean() * 0.01
    scale = scale.where(scale > 0, fallback).fillna(1.0)
    return scale.where(scale > 0, 1.0)


def recent_scale(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    """Mean absolute one-period change over the last ``window`` periods, at every row
    (``unique_id, ds, scale``). Intervals scaled by it widen when a market turns volatile."""
    # rolling mean within each series from cumulative sums: no per-series Python loop
    ids = frame["unique_id"].to_numpy()
    y = frame["y"].to_numpy(dtype=float)
    n = len(y)
    idx = np.arange(n)
    first = np.r_[True, ids[1:] != ids[:-1]] if n else np.zeros(0, bool)
    d = np.abs(np.diff(y, prepend=np.nan))
    d[first] = np.nan
    valid = ~np.isnan(d)
    cs = np.cumsum(np.where(valid, d, 0.0))
    cn = np.cumsum(valid)
    start = np.maximum.accumulate(np.where(first, idx, 0))
    lo = np.maximum(idx - window, start - 1)
    s_lo = np.where(lo >= 0, cs[np.maximum(lo, 0)], 0.0)
    n_lo = np.where(lo >= 0, cn[np.maximum(lo, 0)], 0)
    cnt = cn - n_lo
    roll = np.where(cnt >= 5, (cs - s_lo) / np.maximum(cnt, 1), np.nan)
    full = series_scale(frame)
    out = frame[["unique_id", "ds"]].copy()
    out["scale"] = roll
    fallback = out["unique_id"].map(full)
    out["scale"] = out["scale"].where(out["scale"] > 0, fallback)
    return out


def add_naive(cv: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    if "naive" in cv.columns:
        return cv
    last = frame[["unique_id", "ds", "y"]].rename(columns={"ds": "cutoff", "y": "naive"})
    return cv.merge(last, on=["unique_id", "cutoff"], how="left")


def choose_shrinkage(cv: pd.DataFrame, frame: pd.DataFrame, min_t: float = 2.0) -> float:
    """How far to trust the model over the naive forecast, judged on out-of-sample windows.

    Forecast = naive + a * (model - naive), with ``a`` in [0, 1]. A value of ``a`` > 0 is used only
    when its gain over the naive forecast is consistent across backtest windows (t-statistic of
    the per-window gains above ``min_t``); otherwise ``a`` = 0. Where prices are a random walk,
    the model's moves are noise and a lucky window must not let them through: the forecast stays
    the last price and the advice "buy now", instead of an invented saving.
    """
    scale = cv["unique_id"].map(series_scale(frame)).to_numpy()
    obs = cv["observed"].astype("boolean").fillna(True).to_numpy(bool) if "observed" in cv else None
    y, m, n = cv["y"].to_numpy(), cv["lgbm"].to_numpy(), cv["naive"].to_numpy()
    keep = np.isfinite(y) & np.isfinite(m) & np.isfinite(n)
    if obs is not None:
        keep &= obs
    if not keep.any():
        return 0.0
    windows = cv.loc[keep, "cutoff"].to_numpy()
    base = np.abs(y - n)[keep] / scale[keep]
    best, best_gain = 0.0, 0.0
    for a in np.linspace(0.1, 1, 10):
        err = np.abs(y - (n + a * (m - n)))[keep] / scale[keep]
        gain = pd.Series(base - err).groupby(windows).mean()
        if len(gain) < 2:
            continue
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        t = gain.mean() / se if se > 0 else (np.inf if gain.mean() > 0 else 0.0)
        if t > min_t and gain.mean() > best_gain:
            best, best_gain = float(a), float(gain.mean())
    return best


def _conformal_q(scores: np.ndarray, level: float) -> float:
    n = len(scores)
    if n == 0:
        return float("nan")
    q = min(1.0, math.ceil((n + 1) * level / 100) / n)
    return float(np.quantile(scores, q))


@dataclass
class Calibration:
    scale: dict[str, float]
    q: dict[int, list[float]]  # level -> quantile of |scaled error| per horizon step (index h-1)
    diff_quantiles: list[list[float]]  # per h (index h-1): quantiles on GRID of scaled change error
    n_scores: int

    @classmethod
    def from_backtest(
        cls,
        cv: pd.DataFrame,
        frame: pd.DataFrame,
        horizon: int,
        vol_window: int,
        all_frame: pd.DataFrame | None = None,
    ) -> Calibration:
        """``frame``: history of the backtested series; ``all_frame``: of every series (their
        current volatility scales the intervals at prediction time)."""
        rs = recent_scale(frame, vol_window)
        cv = cv.sort_values(["unique_id", "cutoff", "ds"]).copy()
        cv["h"] = cv.groupby(["unique_id", "cutoff"]).cumcount() + 1
        at_cut = rs.rename(columns={"ds": "cutoff"})
        s = cv[["unique_id", "cutoff"]].merge(at_cut, on=["unique_id", "cutoff"], how="left")[
            "scale"
        ]
        s = s.to_numpy()
        err = (cv["y"].to_numpy() - cv["lgbm"].to_numpy()) / s
        cv["abs_err"] = np.abs(err)
        first = cv.groupby(["unique_id", "cutoff"])[["y", "lgbm"]].transform("first")
        change_err = ((cv["y"] - first["y"]) - (cv["lgbm"] - first["lgbm"])).to_numpy() / s
        cv["change_err"] = change_err
        q: dict[int, list[float]] = {80: [], 95: []}
        diffs: list[list[float]] = []
        for h in range(1, horizon + 1):
            at = cv[cv["h"] == h]
            scores = at["abs_err"].dropna().to_numpy()
            for level in q:
                q[level].append(_conformal_q(scores, level))
            ce = at["change_err"].dropna().to_numpy()
            diffs.append(np.quantile(ce, GRID).tolist() if h > 1 and len(ce) else [0.0] * len(GRID))
        rs_all = rs if all_frame is None else recent_scale(all_frame, vol_window)
        scale = rs_all.groupby("unique_id", sort=False)["scale"].last()
        return cls(
            scale={k: float(v) for k, v in scale.items()},
            q=q,
            diff_quantiles=diffs,
            n_scores=len(cv),
        )

    def apply(self, fc: pd.DataFrame) -> pd.DataFrame:
        """Add lo/hi 80/95 bands and ``p_cheaper`` (probability the price on that date is below
        the price on the first forecast date) to a frame with sku, date, y_pred."""
        fc = fc.sort_values(["sku", "date"]).reset_index(drop=True)
        h = fc.groupby("sku").cumcount().to_numpy()
        h = np.minimum(h, len(self.q[80]) - 1)
        s = fc["sku"].map(self.scale).fillna(float(np.median(list(self.scale.values())))).to_numpy()
        for level in (80, 95):
            width = np.asarray(self.q[level])[h] * s
            fc[f"lo_{level}"] = fc["y_pred"] - width
            fc[f"hi_{level}"] = fc["y_pred"] + width
        first = fc.groupby("sku")["y_pred"].transform("first").to_numpy()
        # P(y_h < y_1) = P(change_err < -(yhat_h - yhat_1)/scale), read off the empirical CDF.
        z = -(fc["y_pred"].to_numpy() - first) / s
        p = np.empty(len(fc))
        for step in np.unique(h):
            m = h == step
            qs = np.asarray(self.diff_quantiles[step])
            if step == 0 or np.ptp(qs) == 0:
                p[m] = 0.0
            else:
                p[m] = np.interp(z[m], qs, GRID, left=0.0, right=1.0)
        fc["p_cheaper"] = p
        return fc


def backtest_metrics(cv: pd.DataFrame, frame: pd.DataFrame, season: int) -> dict[str, Any]:
    """MASE and sMAPE of the model and of naive baselines on a mlforecast cross-validation frame."""
    cv = add_baselines(cv, frame, season)
    scale = series_scale(frame)
    obs = cv[cv["observed"].fillna(True).astype(bool)] if "observed" in cv else cv
    out: dict[str, Any] = {
        "n_forecasts": len(obs),
        "n_series": int(obs["unique_id"].nunique()),
    }
    for name, col in (("model", "lgbm"), ("naive", "naive"), ("seasonal_naive", "snaive")):
        out[name] = point_metrics(obs, col, scale)
    return out


def point_metrics(obs: pd.DataFrame, col: str, scale: pd.Series) -> dict[str, float]:
    err = (obs["y"] - obs[col]).abs()
    mae = err.groupby([obs["unique_id"], obs["cutoff"]]).mean()
    s = mae.index.get_level_values(0).map(scale)
    denom = obs["y"].abs() + obs[col].abs()
    smape = np.where(denom > 0, 2 * err / denom.where(denom > 0, 1), 0.0)
    return {
        "mase": float(np.mean(mae.to_numpy() / np.asarray(s))),
        "smape": float(100 * np.mean(smape)),
        "mae": float(err.mean()),
    }


def add_baselines(cv: pd.DataFrame, frame: pd.DataFrame, season: int) -> pd.DataFrame:
    """Naive (last value at the cutoff) and seasonal naive (same period one season earlier,
    repeated) forecasts for every row of a cross-validation frame."""
    hist = frame[["unique_id", "ds", "y"]]
    cv = add_naive(cv, frame)
    cv = cv.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True)
    h = cv.groupby(["unique_id", "cutoff"]).cumcount().to_numpy()  # 0-based step
    # the seasonal-naive value for step h is the observation (season - h % season) periods
    # before the cutoff... expressed as a position in each series' own calendar
    pos = hist.groupby("unique_id").cumcount()
    keyed = hist.assign(pos=pos.to_numpy())
    cut_pos = (
        cv[["unique_id", "cutoff"]]
        .merge(
            keyed.rename(columns={"ds": "cutoff"})[["unique_id", "cutoff", "pos"]],
            on=["unique_id", "cutoff"],
            how="left",
        )["pos"]
        .to_numpy()
    )
    target_pos = cut_pos - season + 1 + (h % season)
    look = keyed.set_index(["unique_id", "pos"])["y"]
    idx = pd.MultiIndex.from_arrays([cv["unique_id"].to_numpy(), target_pos])
    cv["snaive"] = look.reindex(idx).to_numpy()
    cv["snaive"] = cv["snaive"].fillna(cv["naive"])
    return cv
