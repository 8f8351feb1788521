"""Plain mlforecast baseline for the advice: LightGBM on log prices, lags 1-42, weekday, no
calibration; wait when the forecast minimum is 1% below the first day. Prints MASE/naive and
the share of the oracle saving on a sku,date,price CSV (python scripts/plain_baseline.py f.csv H FOLDS)."""

import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.target_transforms import GlobalSklearnTransformer
from sklearn.preprocessing import FunctionTransformer


def plain(prices, h, folds, lags=42, thr=0.01):
    df = prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})[
        ["unique_id", "ds", "y"]
    ]
    df["ds"] = pd.to_datetime(df["ds"])
    cal = np.sort(df["ds"].unique())
    # business-day files (no weekends) are forecast in business days, as `backtest` does
    freq = "B" if (pd.DatetimeIndex(cal).dayofweek < 5).all() else "D"
    cutoffs = [cal[-1 - (folds - i) * h] for i in range(folds)]
    res = []
    for c in cutoffs:
        tr = df[df.ds <= c]
        f = MLForecast(
            models={"m": lgb.LGBMRegressor(n_estimators=200, learning_rate=0.05, verbose=-1)},
            freq=freq,
            lags=list(range(1, lags + 1)),
            date_features=["dayofweek"],
            target_transforms=[GlobalSklearnTransformer(FunctionTransformer(np.log, np.exp))],
        )
        f.fit(tr, static_features=[])
        p = f.predict(h)
        act = df[df.ds.isin(cal[(cal > c)][:h])]
        p = p.merge(act, on=["unique_id", "ds"])
        last = tr.groupby("unique_id")["y"].last()
        p["naive"] = p["unique_id"].map(last)
        p["cutoff"] = c
        res.append(p)
    p = pd.concat(res)
    scale = df.groupby("unique_id")["y"].apply(lambda s: s.diff().abs().mean())

    def mase(col):
        return ((p[col] - p.y).abs() / p.unique_id.map(scale)).mean()

    out = {"mase_vs_naive": mase("m") / mase("naive")}
    g = p.sort_values(["unique_id", "cutoff", "ds"]).groupby(["unique_id", "cutoff"])
    first_y = g["y"].first()
    low = g["y"].min()

    def choose(w):
        i = w["m"].values.argmin()
        return (
            w["y"].values[i]
            if w["m"].values[i] < (1 - thr) * w["m"].values[0]
            else w["y"].values[0]
        )

    paid = g[["m", "y"]].apply(choose)
    out["saving_pct"] = 100 * (first_y - paid).sum() / first_y.sum()
    out["oracle_pct"] = 100 * (first_y - low).sum() / first_y.sum()
    out["oracle_share"] = (first_y - paid).sum() / (first_y - low).sum()
    return out


if __name__ == "__main__":
    prices = pd.read_csv(sys.argv[1])
    h = int(sys.argv[2])
    folds = int(sys.argv[3])
    t = time.time()
    print("plain", plain(prices, h, folds), round(time.time() - t, 1), "s")
