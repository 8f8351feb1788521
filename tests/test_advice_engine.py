"""The advice engine's parts on small exact cases: level features, per-product trust, the
learned policy, the stock-out reason, and probabilities that never claim certainty."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from coreforecast.grouped_array import GroupedArray

from procurement.forecast.calibration import (
    ISO_PRIOR,
    MIN_GROUP_SERIES,
    NAIVE,
    choose_blend,
    trust_groups,
)
from procurement.forecast.transforms import AboveLow, BelowHigh, SinceDrop
from procurement.recommend import (
    MIN_KIND_WINDOWS,
    NEVER_WAIT,
    SHIFT_PRIOR,
    Policy,
    _best,
    _outcomes,
    _with_actuals,
    advice_record,
    choose_policies,
    choose_policy,
    policy_summary,
    recommend,
)
from ui.features import policy_words


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


def _company(n_good: int, n_rw: int, seed: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    series = {}
    for i in range(n_good):
        y = 100 + rng.normal(0, 3, 40)
        series[f"GOOD{i}"] = (y, y + rng.normal(0, 0.2, 40))
    for i in range(n_rw):  # the model's moves are noise of their own
        y = 100 + np.cumsum(rng.normal(0, 1, 40))
        series[f"RW{i}"] = (y, y[0] + np.cumsum(rng.normal(0, 1, 40)))
    return series


def test_a_group_of_random_walks_stays_at_the_last_price_where_the_company_trusts_the_model() -> (
    None
):
    """Products too new to judge on their own take their group's verdict: random walks beside
    goods the model predicts do not inherit the company's trust, unless their group is too small
    to tell."""
    series = _company(10, MIN_GROUP_SERIES)
    cv, frame = _cv(series)
    groups = pd.Series({k: "drifts" if k.startswith("RW") else "reverts" for k in series})
    # more windows asked of a product than it has: every product takes its group's verdict
    trust, company, _ = choose_blend(cv, frame, groups, min_windows=9)
    assert company != NAIVE and trust["group:reverts"] != NAIVE
    assert trust["group:drifts"] == NAIVE
    assert all(trust[k] == NAIVE for k in series if k.startswith("RW"))
    assert all(trust[k] == company for k in series if k.startswith("GOOD"))

    small = _company(10, MIN_GROUP_SERIES - 2)
    cv, frame = _cv(small)
    groups = pd.Series({k: "drifts" if k.startswith("RW") else "reverts" for k in small})
    trust, company, _ = choose_blend(cv, frame, groups, min_windows=9)
    assert trust["group:drifts"] == company != NAIVE


def test_trust_groups_set_random_walks_apart_from_goods_that_come_back() -> None:
    """On the synthetic catalog, where each product's kind is known: commodities (random walks
    after their market) form a group of their own per category; shelf goods (promotions, shocks
    that fade) keep their category's, or the company's where there is none."""
    from procurement.data.synthetic import generate

    data = generate(40, 730, seed=5, end=pd.Timestamp("2026-06-30").date())
    frame = data.prices.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    truth = data.effects.set_index("sku")
    drifts = (truth["kind"] == "commodity").reindex(frame["unique_id"].unique())
    assert 0 < drifts.sum() < len(drifts)
    plain = trust_groups(frame, 14)
    assert (plain == np.where(drifts, "|drifts", "")).all()
    gaps = frame.assign(y=frame["y"].where(frame.index % 11 != 0))  # days without a price
    assert (trust_groups(gaps, 14) == plain).all()
    by_cat = trust_groups(frame, 14, truth["category"])
    cat = truth["category"].reindex(by_cat.index)
    assert (by_cat == np.where(drifts, cat + "|drifts", cat)).all()


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


def test_a_window_whose_first_price_is_zero_is_left_out_of_the_policy_without_a_warning() -> None:
    paid = _replayed(0.8, 3.0, actual_later=96.0)
    # electricity at zero on a window's first day: its saving in percent does not exist
    zero = _replayed(0.8, 3.0, actual_later=5.0, n=1).assign(sku="Z@0")
    zero.loc[zero.index[0], "y"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide by zero had reached the buyer's screen
        policy, table = choose_policy(pd.concat([paid, zero], ignore_index=True))
    assert policy.min_confidence <= 0.8
    assert max(r["saving_pct"] for r in table) == pytest.approx(4.0)


def _two_kinds(n: int) -> pd.DataFrame:
    """n windows of a product whose dips come back (R: waiting saved 6%) and of one that drifts
    (D: waiting lost 2%), stated alike: 80% likely, 3% cheaper."""
    rng = np.random.default_rng(4)
    parts = []
    for sku, later in (("R", 94.0), ("D", 102.0)):
        for w in range(n):
            one = _replayed(0.8, 3.0, later + rng.normal(0, 1.0), n=1)
            parts.append(one.assign(sku=f"{sku}@{w}"))
    return pd.concat(parts, ignore_index=True)


def test_each_kind_of_product_gets_the_policy_its_own_windows_paid_for() -> None:
    kind_of = {"R": "reverts", "D": "drifts"}
    replayed = _two_kinds(MIN_KIND_WINDOWS)
    alone, _ = choose_policy(replayed)
    assert alone.min_confidence <= 0.8  # one bar for both: waiting paid on average
    policy, _ = choose_policies(replayed, kind_of, evidence=50.0)
    assert policy.of("D").min_confidence == NEVER_WAIT
    assert policy.of("R").min_confidence <= 0.8
    assert policy.of("X").kinds is None  # a product of no kind: the company's
    fc = _replayed(0.8, 3.0, 0.0, n=1).drop(columns="y")
    fc = pd.concat([fc.assign(sku="D"), fc.assign(sku="R"), fc.assign(sku="X")])
    recs = recommend(fc, policy).set_index("sku")
    assert list(recs.index) == ["D", "R", "X"]
    assert recs.loc["D", "buy_now"] and not recs.loc["R", "buy_now"]
    assert not recs.loc["X", "buy_now"]
    # a buyer's own bar applies to every kind
    assert recommend(fc, policy.with_min_confidence(0.9))["buy_now"].all()
    # and is a probability, whoever asks (the CLI, the assistant): 70 for 70% is refused
    with pytest.raises(ValueError, match=r"70 is not a probability between 0.5 and 0.99"):
        policy.with_min_confidence(70)
    record = advice_record(replayed, policy).set_index("sku")
    assert record.loc["D", "waits"] == 0 and record.loc["R", "waits"] == MIN_KIND_WINDOWS
    summary = policy_summary(policy)
    assert summary["kinds"]["drifts"]["products"] == 1
    assert summary["kinds"]["drifts"]["min_confidence"] == NEVER_WAIT
    # too few windows of a kind: one policy for the company
    few, _ = choose_policies(_two_kinds(MIN_KIND_WINDOWS - 1), kind_of, evidence=50.0)
    assert few.kinds is None and "kinds" not in policy_summary(few)


def _noise(seed: int, n: int = 40) -> pd.DataFrame:
    """n windows stated at assorted probabilities and savings whose outcome is noise: the price
    later is 100 +- 2 whatever was stated."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(n):
        p = float(rng.choice([0.55, 0.65, 0.75, 0.85, 0.95]))
        saving = float(rng.choice([0.3, 0.7, 1.5, 2.5, 4.0]))
        parts.append(_replayed(p, saving, 100.0 + rng.normal(0, 2.0), n=1).assign(sku=f"A@{w}"))
    return pd.concat(parts, ignore_index=True)


def test_thresholds_that_paid_only_where_they_were_chosen_do_not_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import procurement.recommend as rec

    noise = _noise(2)
    policy, _ = choose_policies(noise, {}, evidence=50.0)
    assert policy.min_confidence == NEVER_WAIT
    assert policy.out_of_fold_pct is not None and policy.out_of_fold_pct < 0
    summary = policy_summary(policy)
    assert summary["out_of_fold_saving_pct"] == policy.out_of_fold_pct
    assert summary["out_of_fold_t"] == policy.out_of_fold_t < 0
    assert summary["unproven"] and policy_words(summary, 14, "D") == (
        "Advice learned from the backtest: never wait (the thresholds that saved the most on the "
        f"backtest windows they were chosen on saved {policy.out_of_fold_pct:.2f}% a window on "
        "the others)."
    )
    # the search alone found thresholds that would have paid on these very windows
    monkeypatch.setattr(rec, "MIN_OUT_OF_FOLD_T", -np.inf)
    lucky, _ = choose_policies(noise, {}, evidence=50.0)
    assert lucky.min_confidence < NEVER_WAIT and not lucky.unproven
    # waiting that pays on every cutoff passes the check, out of fold as in sample
    paid, _ = choose_policies(
        pd.concat(
            [_replayed(0.8, 3.0, 96.0, n=1).assign(sku=f"A@{w}") for w in range(20)],
            ignore_index=True,
        ),
        {},
        evidence=50.0,
    )
    assert paid.min_confidence <= 0.8 and (paid.out_of_fold_pct or 0) == pytest.approx(4.0)


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
    assert rec["reason"] == (
        "Buy now: order by Wed 02 Dec to have it before the stock runs out; waiting would save 10.0%"
    )
    now = recommend(fc, Policy(0.7, 0.5), max_wait=pd.Series({"A": 0.0})).iloc[0]
    assert now["reason"].startswith("Buy now: order today to have it before the stock runs out")
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


def _window(w: int, path: list[float], actual: list[float]) -> pd.DataFrame:
    """One replayed backtest window: the forecast path (its dips as expected savings, each
    stated 90% likely) and the prices that came."""
    days = pd.date_range("2026-03-02", periods=len(path), freq="D")
    saving = [path[0] - v for v in path]
    return pd.DataFrame(
        {
            "sku": f"A@{w}",
            "date": days,
            "y_pred": path,
            "p_cheaper": [0.0] + [0.9] * (len(path) - 1),
            "expected_saving": saving,
            "y": actual,
        }
    )


def test_a_buyer_following_the_advice_buys_sooner_once_the_price_is_down_to_its_target() -> None:
    from procurement.recommend import advice_record

    path = [100.0, 99.0, 98.0, 95.0]  # advised: day 3, target price 95
    early = [_window(w, path, [100.0, 94.0, 101.0, 99.0]) for w in range(10)]
    late = [_window(w, path, [100.0, 96.0, 95.5, 97.0]) for w in range(10, 20)]
    replay = pd.concat(early + late, ignore_index=True)
    policy, table = choose_policy(replay)
    assert policy.min_confidence <= 0.9 and policy.target_price
    # 6% where the price reached 95 on day 1; 3% on day 3 where it never got there first
    assert max(r["saving_pct"] for r in table) == pytest.approx((6.0 + 3.0) / 2)
    # a first price already at the target is paid at once: no saving, and no loss either
    at_once = [_window(w, path, [94.0, 93.0, 99.0, 99.0]) for w in range(20, 30)]
    _, table3 = choose_policy(pd.concat(early + late + at_once, ignore_index=True))
    assert max(r["saving_pct"] for r in table3) == pytest.approx((6.0 + 3.0 + 0.0) / 3)
    record = advice_record(replay, policy).iloc[0]
    assert record["waits"] == 20 and record["paid_off"] == 20
    assert record["median_saving_pct"] == pytest.approx(4.5)
    # the day after the target is reached counts for nothing: no later price is looked at
    after = pd.concat([_window(0, path, [100.0, 96.0, 102.0, 94.0])], ignore_index=True)
    _, table = choose_policy(pd.concat([after.assign(sku=f"A@{w}") for w in range(10)]))
    assert max(r["saving_pct"] for r in table) == pytest.approx(6.0)
    rec = recommend(replay[replay["sku"] == "A@0"].drop(columns="y"), policy).iloc[0]
    assert rec["target_price"] == pytest.approx(95.0)
    assert rec["reason"].startswith("Buy on Thu 05 Mar (sooner at 95.00 or less): expected 5.0%")


def test_the_policy_waits_past_the_buy_day_for_a_late_promotion_and_not_on_a_trend() -> None:
    path = [100.0, 99.5, 99.0, 95.0, 99.0, 99.5, 100.0]  # a promotion forecast on day 3
    late = [_window(w, path, [100.0, 100.0, 101.0, 100.0, 100.0, 93.0, 100.0]) for w in range(12)]
    policy, table = choose_policy(pd.concat(late, ignore_index=True))
    # it came two days late: bought on day 5 at 93 where the buy day alone paid 100
    assert policy.target_price and policy.grace_steps >= 2
    assert max(r["saving_pct"] for r in table) == pytest.approx(7.0)
    fc = late[0].drop(columns="y").assign(sku="A")
    rec = recommend(fc, policy).iloc[0]
    assert rec["buy_date"] == pd.Timestamp("2026-03-05")
    assert rec["last_buy_date"] == pd.Timestamp("2026-03-02") + pd.Timedelta(
        days=min(3 + policy.grace_steps, 6)
    )
    assert rec["reason"].startswith("Buy once it costs 95.00 or less, expected Thu 05 Mar, by ")
    # the stock lasts until day 4: the wait for the target stops there
    short = recommend(fc, policy, max_wait=pd.Series({"A": 4.0})).iloc[0]
    assert short["last_buy_date"] == pd.Timestamp("2026-03-06")
    # a price that keeps falling: the target buys too soon, so the policy has none
    falling = [_window(w, [100.0, 99.0, 98.0, 97.0], [100.0, 96.0, 94.0, 92.0]) for w in range(12)]
    trend, _ = choose_policy(pd.concat(falling, ignore_index=True))
    assert not trend.target_price and trend.min_confidence < 1.0
    rec = recommend(falling[0].drop(columns="y").assign(sku="A"), trend).iloc[0]
    assert rec["reason"].startswith("Buy on Thu 05 Mar: expected 3.0%")
    assert pd.isna(rec["target_price"]) and pd.isna(rec["last_buy_date"])


def test_the_backtest_marks_the_advised_day_and_the_day_the_buyer_bought() -> None:
    from procurement.forecast.backtest import follow_advice

    days = pd.date_range("2026-03-02", periods=4, freq="D")
    fc = pd.DataFrame(
        {
            "sku": ["A"] * 4 + ["B"] * 4 + ["C"] * 4 + ["D"] * 4,
            "date": list(days) * 4,
            "y_pred": [100, 99, 98, 95] * 2 + [10, 10, 10, 10] + [100, 99, 98, 95],
            "p_cheaper": [0.0, 0.6, 0.7, 0.9] * 4,
            "y": [100, 94, 101, 99, 100, 96, np.nan, 97, 10, 9, 8, 7, 94, 93, 99, 99],
        }
    )
    recs = recommend(fc.drop(columns="y"), Policy(0.8, 1.0, target_price=True))
    assert recs.set_index("sku")["buy_now"].tolist() == [False, False, True, False]
    out = follow_advice(fc, recs).set_index(["sku", "date"])
    assert out.loc["A", "planned"].tolist() == [0, 0, 0, 1]
    assert out.loc["A", "buy"].tolist() == [0, 1, 0, 0]  # 94 on day 1, under the 95 target
    assert out.loc["B", "buy"].tolist() == [0, 0, 0, 1]  # never down to 95: the advised day
    assert out.loc["C", "buy"].tolist() == [1, 0, 0, 0]  # buy now
    # a promotion already on the first day: bought at once, nothing stated for a later day
    assert out.loc["D", "buy"].tolist() == [1, 0, 0, 0]
    assert out.loc["D", "p_cheaper"].tolist() == [0.0, 0.6, 0.7, 0.9]
    conf = recs.set_index("sku")["confidence"]
    assert out.loc[("A", days[1]), "p_cheaper"] == pytest.approx(conf["A"])
    assert out.loc[("A", days[3]), "p_cheaper"] == pytest.approx(0.9)  # every-day chance


def _mixed_replay(stated: float, came_true: float, n: int = 200) -> pd.DataFrame:
    """n windows stating ``stated`` on the later days, of which ``came_true`` really were
    cheaper (the rest dearer)."""
    rng = np.random.default_rng(3)
    cheaper = rng.random(n) < came_true
    parts = []
    for w, ok in enumerate(cheaper):
        part = _replayed(stated, 3.0, actual_later=96.0 if ok else 101.0, n=1)
        parts.append(part.assign(sku=f"A@{w}"))
    return pd.concat(parts, ignore_index=True)


def test_advice_confidence_is_remapped_to_how_often_advice_came_true() -> None:
    from procurement.recommend import confidence_map

    replay = _mixed_replay(stated=0.7, came_true=0.9)
    policy = Policy(0.6, 0.5)
    mapped = confidence_map(replay, policy, evidence=1e9)
    fc = _replayed(0.7, 3.0, 96.0, n=1).drop(columns="y").assign(sku="A")
    before = recommend(fc, policy).iloc[0]
    after = recommend(fc, mapped).iloc[0]
    assert not before["buy_now"] and not after["buy_now"]  # the same day is chosen
    assert before["confidence"] == pytest.approx(0.7)
    observed = float(np.mean(_mixed_replay(0.7, 0.9).groupby("sku")["y"].last() < 100))
    assert after["confidence"] == pytest.approx(observed, abs=0.01)
    # thin evidence (products that move together): most of the mean miss, then half the way
    # to the isotonic fit; none without evidence
    thin = recommend(fc, confidence_map(replay, policy, evidence=ISO_PRIOR)).iloc[0]
    shift = 0.7 + (observed - 0.7) * ISO_PRIOR / (ISO_PRIOR + SHIFT_PRIOR)
    assert thin["confidence"] == pytest.approx((shift + observed) / 2, abs=0.01)
    none = recommend(fc, confidence_map(replay, policy, evidence=0.0)).iloc[0]
    assert none["confidence"] == pytest.approx(0.7)
    few = confidence_map(_mixed_replay(0.7, 0.9, n=20), policy, evidence=1e9)
    assert few.conf_x == ()
    # an overconfident backtest lowers it, and never to certainty either way
    low = recommend(fc, confidence_map(_mixed_replay(0.7, 0.4), policy, 1e9)).iloc[0]
    assert low["confidence"] < 0.5
    sure = recommend(fc, confidence_map(_mixed_replay(0.7, 1.0), policy, 1e9)).iloc[0]
    assert sure["confidence"] <= 0.995


def test_advice_confidence_moves_by_the_mean_miss_where_the_isotonic_fit_is_noisy() -> None:
    """Advice stating 50-95% that came true about 8 points more often, 300 windows, the
    isotonic fit trusted 0.7 of the way (233 independent windows): on average the stated values
    are lifted by most of the mean miss. Moving only 0.7 of the way towards the isotonic fit
    (the map before) lifted them by 0.7 of it exactly, and the advice stayed under-confident."""
    from procurement.recommend import confidence_map

    rng = np.random.default_rng(5)
    stated = rng.uniform(0.5, 0.95, 300)
    came = rng.random(300) < np.minimum(stated + 0.08, 0.99)
    parts = [
        _replayed(float(p), 3.0, actual_later=96.0 if c else 101.0, n=1).assign(sku=f"A@{w}")
        for w, (p, c) in enumerate(zip(stated, came, strict=True))
    ]
    mapped = confidence_map(pd.concat(parts, ignore_index=True), Policy(0.5, 0.5), 233.0)
    miss = float(np.mean(came - stated))
    lift = float(np.mean(mapped.confidence(stated) - stated))
    assert 0.8 * miss < lift < miss
    assert np.all(np.diff(mapped.confidence(np.linspace(0.5, 0.99, 50))) >= 0)
    assert mapped.confidence(np.array([0.995]))[0] <= 0.995


def test_advice_confidence_flattens_where_the_stated_chance_does_not_tell_waits_apart() -> None:
    """Waits stated 72% and 95% that both came true 87-88% of the time (as waits for a target
    price did on four shelves): the map's slope flattens, so neither keeps its stated value.
    A shift by the mean miss alone had left them at 79% and 93% (82% and 88% came true)."""
    from procurement.recommend import confidence_map

    rng = np.random.default_rng(7)
    stated = np.r_[np.full(150, 0.72), np.full(150, 0.95)]
    came = rng.random(300) < np.r_[np.full(150, 0.87), np.full(150, 0.88)]
    parts = [
        _replayed(float(p), 3.0, actual_later=96.0 if c else 101.0, n=1).assign(sku=f"A@{w}")
        for w, (p, c) in enumerate(zip(stated, came, strict=True))
    ]
    mapped = confidence_map(pd.concat(parts, ignore_index=True), Policy(0.5, 0.5), 150.0)
    low, high = mapped.confidence(np.array([0.72, 0.95]))
    seen_low, seen_high = came[:150].mean(), came[150:].mean()
    assert abs(low - seen_low) < 0.03 and abs(high - seen_high) < 0.03, (low, high)


def test_advice_confidence_that_came_true_as_stated_is_still_drawn_to_its_mean() -> None:
    """Waits stated 60-98% that came true exactly as stated in the backtest that fitted the map:
    out of sample such confidences were too spread (see ``ADVICE_SPREAD``), so the map keeps
    their mean and draws each towards it; without evidence it leaves them as stated."""
    from procurement.recommend import ADVICE_SPREAD, SHIFT_PRIOR, confidence_map

    rng = np.random.default_rng(11)
    stated = rng.uniform(0.6, 0.98, 400)
    came = rng.random(400) < stated
    parts = [
        _replayed(float(p), 3.0, actual_later=96.0 if c else 101.0, n=1).assign(sku=f"A@{w}")
        for w, (p, c) in enumerate(zip(stated, came, strict=True))
    ]
    replay = pd.concat(parts, ignore_index=True)
    sure = confidence_map(replay, Policy(0.5, 0.5), 1e9)
    got = sure.confidence(stated)
    assert float(np.mean(got)) == pytest.approx(float(np.mean(stated)), abs=0.02)
    slope = np.polyfit(stated, got, 1)[0]
    assert slope == pytest.approx(ADVICE_SPREAD, abs=0.1)
    assert np.all(np.diff(sure.confidence(np.linspace(0.5, 0.99, 50))) >= 0)
    # half-trusted evidence draws them half as far
    half = confidence_map(replay, Policy(0.5, 0.5), SHIFT_PRIOR).confidence(stated)
    half_slope = np.polyfit(stated, half, 1)[0]
    assert half_slope == pytest.approx(1 - (1 - ADVICE_SPREAD) / 2, abs=0.1)


def test_promotion_features_find_promotions_through_a_weekday_pattern() -> None:
    from procurement.forecast.transforms import PromoDue, PromoSince

    days = 200
    t = np.arange(days)
    weekday = 0.03 * np.sin(2 * np.pi * t / 7)  # moves every day, never a promotion
    promo = np.zeros(days)
    starts = np.arange(10, days, 30)
    for s in starts:
        promo[s : s + 3] = 0.15
    level = weekday - promo
    x = np.r_[level, weekday]  # two series: with and without promotions
    indptr = np.array([0, days, 2 * days], dtype=np.int32)
    since, due = PromoSince(63), PromoDue(63)
    for tfm in (since, due):
        tfm._set_core_tfm(1)
    got_since = since.transform(GroupedArray(x, indptr))
    got_due = due.transform(GroupedArray(x, indptr))
    # lag 1: the day after a promotion starts, the feature knows it started the day before
    for s in starts[1:]:
        assert got_since[s + 1] == 0 and got_since[s + 3] == 2
    # after two promotions 30 days apart, the next is due 30 days after the last
    s = starts[3]
    assert got_due[s + 1] == 30 and got_due[s + 11] == 20
    # the weekday pattern alone is no promotion
    assert (got_since[days + 60 :] == 63).all() and (got_due[days + 60 :] == 63).all()
    # the recursive forecast's update is the statistic at each series' end
    upd = since.update(GroupedArray(x, indptr))
    assert upd[0] == days - 1 - starts[-1] and upd[1] == 63


def test_promotion_starts_shared_by_two_features_are_recomputed_for_other_series() -> None:
    """PromoSince and PromoDue share one computation of the promotion starts per pass; another
    table of the same shape (the next group of series) must get its own."""
    from procurement.forecast.transforms import PromoDue, PromoSince

    rng = np.random.default_rng(8)
    days = 150
    tables = []
    for _ in range(2):
        x = rng.normal(0, 0.01, 2 * days)
        for s in rng.choice(2 * days - 3, 8, replace=False):
            x[s] = -0.2
        tables.append(x)
    indptr = np.array([0, days, 2 * days], dtype=np.int32)
    since, due = PromoSince(63), PromoDue(63)
    for tfm in (since, due):
        tfm._set_core_tfm(1)
    for x in tables:  # in turn, as the groups of a sampled fit are
        ga = GroupedArray(x, indptr)
        got = since.transform(ga), due.transform(ga)
        fresh = []
        for cls in (PromoSince, PromoDue):  # a fresh thread has nothing cached
            tfm = cls(63)
            tfm._set_core_tfm(1)
            with ThreadPoolExecutor(1) as pool:
                ga_copy = GroupedArray(x.copy(), indptr.copy())
                fresh.append(pool.submit(tfm.transform, ga_copy).result())
        np.testing.assert_array_equal(got[0], fresh[0])
        np.testing.assert_array_equal(got[1], fresh[1])
    assert not np.array_equal(since.transform(GroupedArray(tables[0], indptr)), got[0])


def _advised(cheaper: int, cases: int, stated: float) -> pd.DataFrame:
    """``cases`` windows in which waiting to the second day was advised at ``stated``, and came
    true (a lower price on that day) in ``cheaper`` of them."""
    rows = []
    for i in range(cases):
        later = 9.0 if i < cheaper else 11.0
        for day, y, buy, p in ((1, 10.0, 0, 0.0), (2, later, 1, stated)):
            rows.append(
                {"sku": f"S{i}", "cutoff": pd.Timestamp("2026-01-01"), "date": day, "y": y}
                | {"buy": buy, "p_cheaper": p}
            )
    return pd.DataFrame(rows).assign(
        date=lambda d: pd.Timestamp("2026-01-01") + pd.to_timedelta(d["date"], "D")
    )


@pytest.mark.parametrize(("cheaper", "within"), [(35, True), (31, True), (26, False), (44, False)])
def test_reliability_says_whether_a_buckets_miss_is_within_what_chance_leaves_open(
    cheaper: int, within: bool
) -> None:
    from procurement.forecast.backtest import reliability

    (row,) = [r for r in reliability(_advised(cheaper, 50, 0.72))["advice"] if r["cases"]]
    assert row["bucket"] == "70%-80%" and row["cases"] == 50
    assert row["observed"] == pytest.approx(cheaper / 50)
    lo, hi = row["observed_90"]
    # 50 cases: the 90% interval spans 15-23 points around the observed share
    assert lo < cheaper / 50 < hi and 0.14 < hi - lo < 0.24
    assert row["within_chance"] is within


def test_waits_stated_below_even_odds_have_a_bucket_of_their_own() -> None:
    """A wait gated on "no dearer" (a price that seldom moves) states its chance of a cheaper
    day below 50%: such waits were left out of the advice's table altogether."""
    from procurement.forecast.backtest import reliability

    table = reliability(_advised(12, 40, 0.15))["advice"]
    (row,) = [r for r in table if r["cases"]]
    assert row["bucket"] == "0%-50%" and row["cases"] == 40
    assert row["stated"] == pytest.approx(0.15) and row["observed"] == pytest.approx(0.3)


def test_reliability_compares_with_the_price_on_the_first_date_or_not_at_all() -> None:
    """A window whose first date has no price (a holiday) has nothing to compare with: it had
    been compared with its next price, against which nothing was stated."""
    from procurement.forecast.backtest import reliability

    fc = _advised(30, 40, 0.72)
    days = fc.groupby("sku")["date"].transform("min")
    # ten windows without their first price, whose second day is above the third
    gap = fc["sku"].isin([f"S{i}" for i in range(10)])
    fc.loc[gap & (fc["date"] == days), "y"] = np.nan
    third = fc[gap & (fc["date"] > days)].assign(
        date=lambda d: d["date"] + pd.Timedelta(days=1), y=5.0, buy=0, p_cheaper=0.35
    )
    rows = reliability(pd.concat([fc, third], ignore_index=True))
    (advice,) = [r for r in rows["advice"] if r["cases"]]
    assert advice["cases"] == 30 and advice["observed"] == pytest.approx(20 / 30)
    assert sum(r["cases"] for r in rows["all_days"]) == 30  # the ten windows are left out


def test_advice_confidence_is_mapped_on_waits_advised_by_thresholds_chosen_without_them() -> None:
    """Eight backtest cutoffs. Waits stated 90% come true 9 times in 10 at every cutoff; waits
    stated 60% paid 15% at the first cutoff and came true 1 time in 5 at the other seven. The
    thresholds chosen on all windows wait on both (the first cutoff pays for the rest), and the
    waits they advise came true 30% of the time at 60%. Thresholds chosen without the first
    cutoff do not wait there: out of sample, waits stated 60% come true 1 time in 5, and that is
    what the map must describe. Fitted on the waits of the thresholds chosen in sample, it
    stated 38% for them."""
    from procurement.recommend import confidence_map

    rng = np.random.default_rng(13)
    parts = []
    for c in range(8):
        for i in range(25):
            ok = rng.random() < 0.9
            parts.append(_replayed(0.9, 3.0, 96.0 if ok else 101.0, n=1).assign(sku=f"S{i}@{c}"))
        for i in range(25):
            later = 85.0 if c == 0 else (96.0 if rng.random() < 0.2 else 102.0)
            parts.append(_replayed(0.6, 3.0, later, n=1).assign(sku=f"L{i}@{c}"))
    replay = pd.concat(parts, ignore_index=True)
    policy, _ = choose_policy(replay)
    assert policy.min_confidence <= 0.6  # in sample, the 60% waits paid
    last = replay[replay["date"] == replay["date"].max()]
    sixty = last[last["sku"].str.startswith("L")]
    in_sample = float((sixty["y"] < 100).mean())
    elsewhere = float((sixty.loc[~sixty["sku"].str.endswith("@0"), "y"] < 100).mean())
    assert elsewhere < in_sample - 0.05
    stated = confidence_map(replay, policy, evidence=1e9).confidence(np.array([0.6, 0.9]))
    assert stated[0] < in_sample, stated
    assert stated[1] > 0.75  # the steady waits keep their confidence


def test_the_policy_is_the_threshold_whose_neighbours_paid_too_not_a_lone_lucky_one() -> None:
    """Of ~350 thresholds tried on a few backtest windows, the one that saved the most alone,
    between neighbours that saved nothing, is luck; a plateau of thresholds that all paid is not."""
    out = _outcomes(*_with_actuals(_replayed(0.8, 3.0, actual_later=96.0)))
    n_cut = 8
    rng = np.random.default_rng(1)
    out.cutoffs = np.array([f"c{i}" for i in range(n_cut)])
    out.windows = np.full(n_cut, 100.0)
    out.waits = np.full((len(out.policies), n_cut), 10.0)
    out.saved = np.zeros((len(out.policies), n_cut))

    def at(conf: float, pct: float) -> int:
        return next(
            i
            for i, p in enumerate(out.policies)
            if (p.min_confidence, p.min_saving_pct, p.target_price) == (conf, pct, False)
        )

    lone = at(0.85, 3.0)
    out.saved[lone] = 2.0 + rng.normal(0, 0.1, n_cut)  # 2% a window, its neighbours nothing
    plateau = [at(c, s) for c in (0.55, 0.6, 0.65) for s in (0.0, 0.25, 0.5)]
    out.saved[plateau] = 1.5 + rng.normal(0, 0.1, (len(plateau), n_cut))

    policy, table = _best(out, np.ones(n_cut, dtype=bool))
    best_alone = max(range(len(table)), key=lambda i: table[i]["saving_pct"])
    assert best_alone == lone  # the lone threshold has the best record of its own
    chosen = at(policy.min_confidence, policy.min_saving_pct)
    assert chosen in plateau and not policy.target_price
