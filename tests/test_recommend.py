"""Advice from tiny exact forecasts."""

from __future__ import annotations

import pandas as pd
import pytest

from procurement.recommend import Policy, recommend


def _fc(prices: list[float], p: list[float] | None = None, sku: str = "A") -> pd.DataFrame:
    dates = pd.date_range("2026-12-01", periods=len(prices), freq="D")
    df = pd.DataFrame({"sku": sku, "date": dates, "y_pred": prices})
    df["lo_80"] = df["y_pred"] - 1
    df["hi_80"] = df["y_pred"] + 1
    if p is not None:
        df["p_cheaper"] = p
    return df


def test_recommend_picks_cheapest_confident_day_and_exact_saving() -> None:
    rec = recommend(_fc([100, 99, 95, 97], [0, 0.8, 0.9, 0.85])).iloc[0]
    assert not rec["buy_now"]
    assert rec["buy_date"] == pd.Timestamp("2026-12-03")
    assert rec["saving"] == pytest.approx(5.0)
    assert rec["saving_pct"] == pytest.approx(5.0)
    assert rec["confidence"] == pytest.approx(0.9)
    assert rec["reason"] == "Buy on Thu 03 Dec: expected 5.0% cheaper than today, 90% likely"


def test_a_wait_for_a_tiny_saving_says_how_tiny_not_zero() -> None:
    rec = recommend(_fc([100, 99.96, 100], [0, 0.8, 0.1]), Policy(0.7, 0.0)).iloc[0]
    assert not rec["buy_now"]
    assert rec["reason"] == "Buy on Wed 02 Dec: expected 0.04% cheaper than today, 80% likely"


def test_recommend_buy_now_when_saving_is_not_confident_enough() -> None:
    rec = recommend(_fc([100, 98, 96], [0, 0.55, 0.6])).iloc[0]
    assert rec["buy_now"] and rec["saving"] == 0
    assert rec["buy_date"] == pd.Timestamp("2026-12-01")
    assert rec["confidence"] == pytest.approx(0.4)


def test_recommend_buy_now_when_prices_rise() -> None:
    rec = recommend(_fc([100, 102, 104], [0, 0.1, 0.05])).iloc[0]
    assert rec["buy_now"]
    assert "rise 4.0%" in rec["reason"]


def test_recommend_ignores_savings_below_the_minimum() -> None:
    rec = recommend(_fc([100, 99.8], [0, 0.99]), Policy(min_saving_pct=0.5)).iloc[0]
    assert rec["buy_now"]


def test_recommend_respects_max_wait_from_stock() -> None:
    fc = _fc([100, 97, 90], [0, 0.9, 0.95])
    rec = recommend(fc, max_wait=pd.Series({"A": 1})).iloc[0]
    assert rec["buy_date"] == pd.Timestamp("2026-12-02")


def test_recommend_without_calibration_uses_intervals() -> None:
    fc = _fc([100, 100, 80])
    fc.loc[2, ["lo_80", "hi_80"]] = [78, 82]
    rec = recommend(fc).iloc[0]
    assert rec["buy_date"] == pd.Timestamp("2026-12-03") and rec["confidence"] > 0.99


def test_recommend_one_row_per_sku_with_total_for_quantity() -> None:
    fc = pd.concat([_fc([10, 9], [0, 0.9], "A"), _fc([5, 6], [0, 0.0], "B")])
    recs = recommend(fc, quantity=pd.Series({"A": 10.0})).set_index("sku")
    assert recs.loc["A", "saving_total"] == pytest.approx(10.0)
    assert recs.loc["B", "buy_now"]
