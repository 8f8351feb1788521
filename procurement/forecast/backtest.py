"""Rolling-origin backtest of the whole procedure (features, fit, calibration, advice) on a CSV,
without a database: each fold refits on data up to its cutoff and is scored on the next horizon."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from procurement.forecast.calibration import add_baselines, point_metrics, series_scale
from procurement.forecast.features import (
    SPARSE_STEP,
    infer_freq,
    period_dates,
    regularize,
    sparse_series,
    spec_for,
)
from procurement.forecast.model import ModelParams, TrainingData, fit_price_model, min_history
from procurement.recommend import Policy, policy_summary, recommend


@dataclass
class BacktestResult:
    forecasts: pd.DataFrame  # sku, cutoff, date, y_pred, lo_80, hi_80, buy (+ y and baselines)
    metrics: dict[str, Any]


def run_backtest(
    prices: pd.DataFrame,
    horizon: int,
    folds: int,
    drivers: pd.DataFrame | None = None,
    params: ModelParams | None = None,
    policy: Policy | None = None,
    freq: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """``prices``: sku, date, price, optionally category. ``drivers`` (optional): name, date,
    value, used as global drivers of every series (e.g. wholesale prices for retail ones); a
    driver named ``index:<category>`` drives only that category's products, as in training."""
    if folds < 1 or horizon < 1:
        raise ValueError("folds and horizon must be at least 1")
    raw = prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})[
        ["unique_id", "ds", "y"]
    ]
    raw = raw.assign(ds=pd.to_datetime(raw["ds"]), y=pd.to_numeric(raw["y"], errors="coerce"))
    raw = raw.dropna(subset=["y"])
    raw = raw[np.isfinite(raw["y"])]
    categories = None
    if "category" in prices.columns:
        named = prices.dropna(subset=["category"]).drop_duplicates("sku", keep="last")
        categories = dict(zip(named["sku"].astype(str), named["category"].astype(str), strict=True))
    if freq and freq.startswith("W-"):
        _say_other_weekday(raw, freq)
    freq = freq or infer_freq(raw)
    spec = spec_for(freq)
    panel = regularize(raw, freq)
    _say_sparse(panel, freq)
    # each price's date on the calendar: a fold trains on what its cutoff's panel shows (a week's
    # price quoted on Tuesday after a holiday is that Monday's, and was the naive forecast's
    # while the model, cut on the quote's own date, forecast from the week before)
    on_calendar = period_dates(raw["ds"], freq)
    drv = None
    if drivers is not None:
        drv = drivers.rename(columns={"date": "ds"})[["name", "ds", "value"]]
        drv = drv.assign(ds=pd.to_datetime(drv["ds"]))
    calendar = pd.date_range(panel["ds"].min(), panel["ds"].max(), freq=freq)
    if len(calendar) <= folds * horizon:
        raise ValueError("series too short for that many folds")
    cutoffs = [calendar[-1 - (folds - i) * horizon] for i in range(folds)]
    need = min_history(spec, horizon)
    if len(calendar) - folds * horizon < need:
        # the first fold trains on what lies before its cutoff
        fit = (len(calendar) - need) // horizon
        raise ValueError(
            f"the first of {folds} folds ends on {cutoffs[0].date()} with "
            f"{len(calendar) - folds * horizon} periods of history, and training needs {need}: "
            + (f"use at most {fit} folds" if fit >= 1 else "more history, or a shorter horizon")
        )

    rows, recs_all, shrinks, policies = [], [], [], []
    model_pts: list[pd.DataFrame] = []
    offset = pd.tseries.frequencies.to_offset(freq)
    for i, cutoff in enumerate(cutoffs):
        # every window starts the day after the cutoff: a product without a price on it (a
        # holiday, a missing day) is carried forward to it, as the buyer knows its last price;
        # one without a price over the last horizon has stopped being quoted and is not forecast
        seen = panel[panel["observed"] & (panel["ds"] <= cutoff)]
        last_seen = seen.groupby("unique_id")["ds"].max()
        quoted = last_seen.index[last_seen > cutoff - horizon * offset]
        train_raw = raw[(on_calendar <= cutoff) & raw["unique_id"].isin(quoted)]
        data = TrainingData(
            prices=train_raw,
            drivers=None if drv is None else drv[drv["ds"] <= cutoff],
            categories=categories,
            until=cutoff,
        )
        if not len(quoted):
            where = _stale(panel, quoted, cutoff, horizon)
            raise ValueError(f"no product has a price close before a fold's end: {where}")
        try:
            model = fit_price_model(data, freq, horizon, params)
        except ValueError as exc:
            raise ValueError(f"{exc} ({_stale(panel, quoted, cutoff, horizon)})") from None
        fc = model.predict(horizon)
        shrinks.append(model.shrink)
        fc["cutoff"] = cutoff
        recs = recommend(fc, policy or model.policy)
        policies.append(policy_summary(policy or model.policy or Policy()))
        actual = panel[(panel["ds"] > cutoff) & (panel["ds"] <= cutoff + (horizon + 1) * offset)]
        fc = fc.merge(
            actual.rename(columns={"unique_id": "sku", "ds": "date"}),
            on=["sku", "date"],
            how="left",
        )
        fc = follow_advice(fc, recs)
        hist = panel[panel["ds"] <= cutoff]
        scale = series_scale(hist)
        fc["scale"] = fc["sku"].map(scale)
        cvlike = fc.rename(columns={"sku": "unique_id", "date": "ds", "y_pred": "lgbm"})
        cvlike = add_baselines(cvlike, hist, spec.season)
        model_pts.append(cvlike)
        recs["cutoff"] = cutoff
        recs_all.append(recs)
        rows.append(fc)
        if progress:
            progress(i + 1, folds)

    allfc = pd.concat(rows, ignore_index=True)
    cv = pd.concat(model_pts, ignore_index=True)
    metrics = _metrics(cv, allfc, panel, cutoffs, spec.season, freq, horizon, folds)
    metrics["shrink_to_naive_per_fold"] = shrinks
    # products of the file no fold forecast: a buyer reading the figures must know who is not
    # in them (a new product with a few weeks of prices had vanished without a word)
    absent = sorted(set(panel["unique_id"].astype(str)) - set(allfc["sku"].astype(str)))
    metrics["not_forecast"] = {
        "products": len(absent),
        "skus": absent[:20],
        "why": f"fewer than {need} periods of prices before every fold's end, or no price in "
        f"the {horizon} periods before it",
    }
    metrics["policy_per_fold"] = policies
    cols = ["sku", "cutoff", "date", "y_pred", "lo_80", "hi_80", "buy", "p_cheaper"]
    out = allfc[[*cols, "lo_95", "hi_95", "planned", "y"]].copy()
    return BacktestResult(forecasts=out, metrics=metrics)


def _say_other_weekday(raw: pd.DataFrame, freq: str) -> None:
    """Warn where a weekly ``freq`` names another weekday than the prices are dated on: each
    week's price is then dated on that weekday (Friday quotes read as the next Monday's,
    silently)."""
    try:
        found = infer_freq(raw)
    except ValueError:
        return
    if found.startswith("W-") and found != freq:
        warnings.warn(
            f"frequency {freq} given for prices dated on {found[2:].title()}s ({found}): each "
            f"week's price is dated on the {freq[2:].title()} of its week",
            UserWarning,
            stacklevel=3,
        )
    elif found in ("D", "B"):
        warnings.warn(
            f"frequency {freq} given for daily prices: each week is forecast and judged at the "
            "last price of its days up to three after its date, not at the price of that date",
            UserWarning,
            stacklevel=3,
        )


def _say_sparse(panel: pd.DataFrame, freq: str) -> None:
    """Warn where a file of daily prices holds series priced a week or more apart
    (``sparse_series``)."""
    sparse = sparse_series(panel["unique_id"], panel["observed"], freq)
    if sparse:
        n = panel["unique_id"].nunique()
        names = ", ".join(sparse[:10]) + (" ..." if len(sparse) > 10 else "")
        warnings.warn(
            f"{len(sparse)} of {n} series are priced {SPARSE_STEP} or more days apart in "
            f"a file of daily prices ({names}): they are forecast as daily prices held between "
            "quotes, and their bands are sized on the daily ones; backtest them in a file of "
            "their own",
            UserWarning,
            stacklevel=3,
        )


def _stale(panel: pd.DataFrame, quoted: pd.Index, cutoff: pd.Timestamp, horizon: int) -> str:
    """Where a fold's products come from, to say beside an error of its training: the folds end
    at the file's newest date, and one stray date a year after the rest leaves every fold with
    the one product that has it."""
    last = panel[panel["observed"]].groupby("unique_id")["ds"].max()
    newest = last.idxmax()
    text = (
        f"the fold ending {cutoff:%Y-%m-%d} has {len(quoted)} of {len(last)} products with a "
        f"price in the {horizon} periods before it; the folds end at the file's newest date, "
        f"{last.max():%Y-%m-%d} ({newest})"
    )
    others = last.drop(newest)
    if len(others) and len(quoted) < len(last):
        text += f", and the other products' last prices are on {others.median():%Y-%m-%d} or so"
    return text


def follow_advice(fc: pd.DataFrame, recs: pd.DataFrame) -> pd.DataFrame:
    """Mark the advised day (``planned``) and the day a buyer following the advice bought
    (``buy``) in one window's forecast with its actual prices ``y``: where waiting was advised,
    the first day up to its last buy day whose price was at or below its target price
    (``recommend``'s ``follow``; the first day itself when a promotion began on it), else the
    last buy day. A later bought day states the advice's own confidence (``Policy.confidence``),
    as the pages show it."""
    plan = recs.set_index("sku")
    buy_date = fc["sku"].map(plan["buy_date"])
    fc = fc.assign(planned=(fc["date"] == buy_date).astype(int))
    target = fc["sku"].map(plan["target_price"]) if "target_price" in plan else np.nan
    last = (
        fc["sku"].map(plan["last_buy_date"]).fillna(buy_date)
        if "last_buy_date" in plan
        else buy_date
    )
    first = fc.groupby("sku")["date"].transform("min")
    early = (fc["date"] <= last) & (fc["y"] <= target)
    bought = last.where(~early, fc["date"])
    fc["buy"] = (fc["date"] == bought.groupby(fc["sku"]).transform("min")).astype(int)
    waiting = plan.loc[~plan["buy_now"].astype(bool), "confidence"]
    advised = (fc["buy"] == 1) & (fc["date"] > first) & fc["sku"].isin(waiting.index)
    fc.loc[advised, "p_cheaper"] = fc.loc[advised, "sku"].map(waiting).to_numpy()
    return fc


def _metrics(
    cv: pd.DataFrame,
    fc: pd.DataFrame,
    panel: pd.DataFrame,
    cutoffs: list[pd.Timestamp],
    season: int,
    freq: str,
    horizon: int,
    folds: int,
) -> dict[str, Any]:
    obs = cv[cv["observed"].astype("boolean").fillna(False).astype(bool) & cv["y"].notna()]
    scale = pd.concat([series_scale(panel[panel["ds"] <= c]).rename(c) for c in cutoffs], axis=1)

    # MASE per (series, fold) with the scale known at that fold's cutoff
    def by_fold(col: str) -> dict[str, float]:
        parts = []
        for c in cutoffs:
            o = obs[obs["cutoff"] == c]
            if len(o):
                parts.append((o, scale[c]))
        if not parts:
            raise ValueError("no actual prices in the backtest windows: fewer folds, or more data")
        res = [point_metrics(o, col, s) for o, s in parts]
        n = [len(o) for o, _ in parts]
        return {k: float(np.average([r[k] for r in res], weights=n)) for k in res[0]}

    m: dict[str, Any] = {
        "freq": freq,
        "horizon": horizon,
        "folds": folds,
        "cutoffs": [str(c.date()) for c in cutoffs],
        "n_series": int(obs["unique_id"].nunique()),
        "n_forecasts": len(obs),
        "model": by_fold("lgbm"),
        "naive": by_fold("naive"),
        "seasonal_naive": by_fold("snaive"),
    }
    y = obs["y"]
    m["coverage_80"] = float(((y >= obs["lo_80"]) & (y <= obs["hi_80"])).mean())
    m["coverage_95"] = float(((y >= obs["lo_95"]) & (y <= obs["hi_95"])).mean())
    # prices that never moved over the windows: the naive forecast is exact, and so is a model
    # that matches it
    naive_mase, model_mase = m["naive"]["mase"], m["model"]["mase"]
    m["model"]["mase_vs_naive"] = (
        model_mase / naive_mase if naive_mase > 0 else (1.0 if model_mase == 0 else None)
    )

    # Advice: realized saving of the buy day against buying on the first date of each window.
    win = fc[fc["y"].notna()].sort_values(["sku", "cutoff", "date"])
    g = win.groupby(["sku", "cutoff"], sort=False)
    first = g["y"].first()
    low = g["y"].min()
    paid = win[win["buy"] == 1].set_index(["sku", "cutoff"])["y"].reindex(first.index).fillna(first)
    realized = first - paid
    oracle = first - low
    # had the buyer waited for the advised day whatever the price did before it
    on_day = win[win["planned"] == 1].set_index(["sku", "cutoff"])["y"]
    fixed = first - on_day.reindex(first.index).fillna(first)
    fg = fc.sort_values(["sku", "cutoff", "date"]).groupby(["sku", "cutoff"], sort=False)
    buy_dates = fc[fc["buy"] == 1].set_index(["sku", "cutoff"])["date"]
    planned = fc[fc["planned"] == 1].set_index(["sku", "cutoff"])["date"]
    waits = int((planned > fg["date"].first().reindex(planned.index)).sum())
    m["advice"] = {
        "windows": len(first),
        "wait_advised": waits,
        "mean_realized_saving": float(realized.mean()),
        "mean_realized_saving_pct": float(100 * realized.sum() / first.abs().sum()),
        "mean_oracle_saving_pct": float(100 * oracle.sum() / first.abs().sum()),
        "oracle_share": float(realized.sum() / oracle.sum()) if oracle.sum() > 0 else 0.0,
        "windows_losing": int((realized < 0).sum()),
        "bought_before_advised_day": int((buy_dates.reindex(planned.index) < planned).sum()),
        "bought_after_advised_day": int((buy_dates.reindex(planned.index) > planned).sum()),
        "advised_day_saving_pct": float(100 * fixed.sum() / first.abs().sum()),
        "advised_day_oracle_share": float(fixed.sum() / oracle.sum()) if oracle.sum() > 0 else 0.0,
    }
    m["reliability"] = reliability(fc)
    return m


# the advice's stated chance of a cheaper buy day: from 50% in tenths, and one bucket below it
# (waits gated on "no dearer" where a price seldom moves, stated as the chance of cheaper)
BUCKETS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def reliability(fc: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """Stated probability against what happened.

    ``advice``: windows where waiting was advised, grouped by the probability stated for the
    buy day, against how often the price on that day was really below the first day's.
    ``all_days``: every later day of every window, by its ``p_cheaper``, in tenths.
    Each bucket has the 90% Wilson interval of its observed share (``observed_90``, as if its
    cases were independent: the days of one window are not, so it is the narrowest) and
    whether the stated probability lies in it (``within_chance``).
    """
    # against the price on each window's first date, as ``p_cheaper`` is stated: a window whose
    # first date has no price (a holiday) has nothing to compare with (it had been compared
    # with its next price, and EIA spot's days after New Year read 38% stated, 67% came true)
    win = fc.sort_values(["sku", "cutoff", "date"])
    keys = [win["sku"], win["cutoff"]]
    at_first = win.groupby(keys, sort=False).cumcount() == 0
    first_y = win["y"].where(at_first).groupby(keys, sort=False).transform("max")
    later = win[~at_first & win["y"].notna() & first_y.notna()]
    later = later.assign(cheaper=later["y"] < first_y[later.index])
    advised = later[later["buy"] == 1]

    def table(rows: pd.DataFrame, edges: tuple[float, ...]) -> list[dict[str, Any]]:
        out = []
        for lo, hi in pairwise(edges):
            top = hi >= 1.0
            sel = rows[
                (rows["p_cheaper"] >= lo)
                & ((rows["p_cheaper"] <= hi) if top else (rows["p_cheaper"] < hi))
            ]
            row: dict[str, Any] = {
                "bucket": f"{lo:.0%}-{hi:.0%}",
                "cases": len(sel),
                "stated": float(sel["p_cheaper"].mean()) if len(sel) else None,
                "observed": float(sel["cheaper"].mean()) if len(sel) else None,
            }
            if len(sel):
                # what chance alone leaves open: the observed share of a bucket of 50 cases
                # stated at 70% falls outside 65-75% four times in ten
                ci = binomtest(int(sel["cheaper"].sum()), len(sel)).proportion_ci(0.9, "wilson")
                row["observed_90"] = [float(ci.low), float(ci.high)]
                row["within_chance"] = bool(ci.low <= row["stated"] <= ci.high)
            out.append(row)
        return out

    return {
        "advice": table(advised, BUCKETS),
        "all_days": table(later, tuple(np.round(np.linspace(0, 1, 11), 1))),
    }
