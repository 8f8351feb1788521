"""Turn a price forecast into advice: the day to buy, the saving to expect and how sure it is.

The rule is deliberately conservative: wait only when the forecast saving is large enough and
the calibrated probability that the later day really is cheaper clears the buyer's bar;
otherwise buy now. On prices that behave like a random walk this says "buy now" almost always,
which is the honest answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm


@dataclass(frozen=True)
class Policy:
    min_confidence: float = 0.7  # probability that the chosen day is cheaper than the first day
    min_saving_pct: float = 0.5  # smaller expected savings are not worth waiting for


def _p_cheaper_from_intervals(fc: pd.DataFrame) -> np.ndarray:
    """Fallback when the forecast has no calibrated ``p_cheaper``: a normal approximation with
    random-walk errors, so Var(e_h - e_1) = Var(e_h) - Var(e_1)."""
    z80 = norm.ppf(0.9)
    sd = (fc["hi_80"] - fc["lo_80"]).to_numpy() / (2 * z80)
    sd1 = fc.groupby("sku")["hi_80"].transform("first") - fc.groupby("sku")["lo_80"].transform(
        "first"
    )
    sd1 = sd1.to_numpy() / (2 * z80)
    sd_change = np.sqrt(np.maximum(sd**2 - sd1**2, (0.25 * sd) ** 2))
    first = fc.groupby("sku")["y_pred"].transform("first").to_numpy()
    gain = first - fc["y_pred"].to_numpy()
    return norm.cdf(gain / np.where(sd_change > 0, sd_change, np.inf))


def recommend(
    forecast: pd.DataFrame,
    policy: Policy | None = None,
    max_wait: pd.Series | None = None,
    quantity: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per sku: ``buy_date``, ``buy_now``, ``first_price``, ``buy_price``,
    ``saving`` (per unit), ``saving_pct``, ``saving_total`` (x quantity), ``confidence``, ``reason``.

    ``forecast`` has sku, date, y_pred, lo_80, hi_80 and optionally p_cheaper (calibrated).
    ``max_wait`` (days, per sku) caps how long the buyer can wait, e.g. until stock runs out.
    """
    policy = policy or Policy()
    fc = forecast.sort_values(["sku", "date"]).reset_index(drop=True)
    if "p_cheaper" not in fc.columns:
        fc["p_cheaper"] = _p_cheaper_from_intervals(fc)
    g = fc.groupby("sku", sort=False)
    fc["step"] = g.cumcount()
    first_price = g["y_pred"].transform("first")
    first_date = g["date"].transform("first")
    fc["saving"] = first_price - fc["y_pred"]
    fc["saving_pct"] = 100 * fc["saving"] / first_price.abs().where(first_price.abs() > 0, np.nan)
    ok = (
        (fc["step"] > 0)
        & (fc["p_cheaper"] >= policy.min_confidence)
        & (fc["saving_pct"] >= policy.min_saving_pct)
    )
    if max_wait is not None:
        wait_days = (fc["date"] - first_date).dt.days
        limit = fc["sku"].map(max_wait).fillna(np.inf)
        ok &= wait_days <= limit
    fc["score"] = np.where(ok, fc["saving"], -np.inf)
    best_idx = fc.groupby("sku", sort=False)["score"].idxmax()
    best = fc.loc[best_idx].set_index("sku")
    first = fc[fc["step"] == 0].set_index("sku")
    wait = np.isfinite(best["score"])
    last = g["y_pred"].last()
    trend_pct = (
        100 * (last - first["y_pred"]) / first["y_pred"].abs().where(first["y_pred"] != 0, np.nan)
    )
    max_p = fc[fc["step"] > 0].groupby("sku")["p_cheaper"].max().reindex(first.index).fillna(0.0)

    out = pd.DataFrame(index=first.index)
    out["buy_now"] = ~wait
    out["buy_date"] = np.where(wait, best["date"], first["date"])
    out["buy_date"] = pd.to_datetime(out["buy_date"])
    out["first_date"] = first["date"]
    out["first_price"] = first["y_pred"]
    out["buy_price"] = np.where(wait, best["y_pred"], first["y_pred"])
    out["saving"] = np.where(wait, best["saving"], 0.0)
    out["saving_pct"] = np.where(wait, best["saving_pct"], 0.0)
    out["confidence"] = np.where(wait, best["p_cheaper"], 1.0 - max_p)
    out["trend_pct"] = trend_pct
    qty = quantity.reindex(out.index).fillna(1.0) if quantity is not None else 1.0
    out["saving_total"] = out["saving"] * qty
    out["reason"] = [
        _reason(w, d, sp, c, tr)
        for w, d, sp, c, tr in zip(
            wait,
            out["buy_date"],
            out["saving_pct"],
            out["confidence"],
            out["trend_pct"],
            strict=True,
        )
    ]
    return out.reset_index()


def _reason(wait: bool, date: pd.Timestamp, saving_pct: float, conf: float, trend: float) -> str:
    if wait:
        # a backtest can't justify certainty; never print 100%
        likely = ">99%" if conf > 0.99 else f"{conf:.0%}"
        return f"Buy on {date:%a %d %b}: expected {saving_pct:.1f}% cheaper than today, {likely} likely"
    if trend > 0.5:
        return f"Buy now: price forecast to rise {trend:.1f}% over the horizon"
    return "Buy now: no reliable saving from waiting"
