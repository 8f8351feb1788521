"""The advice engine's parts on small exact cases: level features, per-product trust, the
learned policy, the stock-out reason, and probabilities that never claim certainty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from coreforecast.grouped_array import GroupedArray

from procurement.forecast.calibration import NAIVE, choose_blend
from procurement.forecast.transforms import AboveLow, BelowHigh, SinceDrop
from procurement.recommend import NEVER_WAIT, Policy, choose_policy, recommend


def _reference(x: np.ndarray, kind: str, window: int) -> np.ndarray:
    level = np.cumsum(np.nan_to_num(x))
    s = pd.Series(level)
    if kind == "high":
        stat = level - s.rolling(window, min_periods=1).max().to_numpy()
    elif kind == "low":
        stat = level - s.rolling(window, min_periods=1).min().to_numpy()
    else:
        stat, last = [], None
        for i, v in enumerate(np.nan_to_num(x)):
            if v < -1.0:
                last = i
            stat.append(min(window, i - last) if last is not None else window)
        stat = np.asarray(stat, float)
    return np.r_[np.nan, stat[:-1]]  # lag 1: only what was known the period before


@pytest.mark.parametrize(
    ("tfm", "kind", "window"),
    [(BelowHigh(5), "high", 5), (AboveLow(9), "low", 9), (SinceDrop(1.0, 10), "since", 10)],
)
def test_level_transforms_match_a_per_series_reference_and_never_cross_series(
    tfm, kind, window
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    x[0] = x[15] = np.nan  # each series starts with the NaN of the first difference
    indptr = np.array([0, 15, 40], dtype=np.int32)
    tfm._set_core_tfm(1)
    got = tfm.transform(GroupedArray(x, indptr))
    want = np.concatenate([_reference(x[0:15], kind, window), _reference(x[15:40], kind, window)])
    np.testing.assert_allclose(got, want, equal_nan=True)
    # the update (next step of a recursive forecast) is the statistic at each series' end
    upd = tfm.update(GroupedArray(x, indptr))
    full = [_reference(np.r_[x[a:b], 0.0], kind, window)[-1] for a, b in ((0, 15), (15, 40))]
    np.testing.assert_allclose(upd, full)


def _cv(series: dict[str, tuple[np.ndarray, np.ndarray]], windows: int = 8, h: int = 5):
    """A backtest frame where each series has actuals and a 'change' model forecast."""
    rows = []
    for uid, (y, model) in series.items():
        for w in range(windows):
            for k in range(h):
                i = w * h + k
                rows.append(
                    {
                        "unique_id": uid,
                        "cutoff": pd.Timestamp("2026-01-01") + pd.Timedelta(days=7 * w),
                        "ds": pd.Timestamp("2026-01-02") + pd.Timedelta(days=7 * w + k),
                        "y": y[i],
                        "naive": y[w * h - 1] if w else 100.0,
                        "change": model[i],
                    }
                )
    cv = pd.DataFrame(rows)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(list(series), 50),
            "ds": np.tile(pd.date_range("2025-01-01", periods=50), len(series)),
            "y": np.concatenate([np.cumsum(np.ones(50)) for _ in series]),
        }
    )
    return cv, frame


def test_trust_goes_to_the_product_the_model_predicts_and_not_to_the_random_walk() -> None:
    rng = np.random.default_rng(1)
    n = 40
    y_good = 100 + rng.normal(0, 3, n)
    good_model = y_good + rng.normal(0, 0.2, n)  # the model nearly knows the future
    y_rw = 100 + np.cumsum(rng.normal(0, 3, n))  # a random walk
    rw_model = 100 + np.cumsum(rng.normal(0, 3, n))  # the model's moves are noise
    cv, frame = _cv({"GOOD": (y_good, good_model), "RW": (y_rw, rw_model)})
    trust, _, held_out = choose_blend(cv, frame, min_windows=4)
    assert trust["GOOD"] != NAIVE
    assert trust["RW"] == NAIVE
    # every window also has the blend chosen without it
    assert len(held_out) == 2 * 8 and set(held_out["unique_id"]) == {"GOOD", "RW"}
    assert (held_out.loc[held_out["unique_id"] == "RW", "w_change"] == 0).all()


def _replayed(p_later: float, saving: float, actual_later: float, n: int = 20) -> pd.DataFrame:
    """n windows of 3 days: stated p and expected saving on days 2-3, actual prices."""
    rows = []
    for w in range(n):
        for step in range(3):
            rows.append(
                {
                    "sku": f"A@{w}",
                    "date": pd.Timestamp("2026-03-02") + pd.Timedelta(days=step),
                    "y_pred": 100.0 - (saving if step else 0.0),
                    "p_cheaper": p_later if step else 0.0,
                    "expected_saving": saving if step else 0.0,
                    "y": 100.0 if step == 0 else actual_later,
                }
            )
    return pd.DataFrame(rows)


def test_policy_waits_when_waiting_paid_in_the_backtest() -> None:
    policy, table = choose_policy(_replayed(0.8, 3.0, actual_later=96.0))
    assert policy.min_confidence <= 0.8 and policy.min_saving_pct <= 3.0
    assert max(r["saving_pct"] for r in table) == pytest.approx(4.0)


def test_policy_never_waits_when_waiting_lost_money_in_the_backtest() -> None:
    policy, _ = choose_policy(_replayed(0.8, 3.0, actual_later=103.0))
    assert policy.min_confidence == NEVER_WAIT
    fc = _replayed(0.99, 5.0, 90.0, n=1).drop(columns="y").assign(sku="A")
    assert recommend(fc, policy).iloc[0]["buy_now"]  # no stated probability reaches it


def test_stock_out_is_the_reason_when_waiting_would_pay_but_stock_runs_out() -> None:
    dates = pd.date_range("2026-12-01", periods=5, freq="D")
    fc = pd.DataFrame(
        {
            "sku": "A",
            "date": dates,
            "y_pred": [100, 100, 100, 90, 100],
            "p_cheaper": [0, 0.5, 0.5, 0.9, 0.5],
        }
    )
    rec = recommend(fc, Policy(0.7, 0.5), max_wait=pd.Series({"A": 1.0})).iloc[0]
    assert rec["buy_now"] and rec["stockout"]
    assert rec["reason"] == "Buy now: stock runs out before Wed 02 Dec; waiting would save 10.0%"
    free = recommend(fc, Policy(0.7, 0.5)).iloc[0]
    assert not free["buy_now"] and free["buy_date"] == dates[3]


def test_confidence_is_never_stated_as_certain() -> None:
    dates = pd.date_range("2026-12-01", periods=3, freq="D")
    fc = pd.DataFrame(
        {"sku": "A", "date": dates, "y_pred": [100, 80, 100], "p_cheaper": [0, 1.0, 0.0]}
    )
    rec = recommend(fc).iloc[0]
    assert "100%" not in rec["reason"] and "99% likely" in rec["reason"]
    up = recommend(fc.assign(y_pred=[100, 101, 102], p_cheaper=[0, 0, 0])).iloc[0]
    assert up["confidence"] <= 0.99
