"""What the buyer is told: buy days on working days only, the horizon's edge flagged, and a
warning when the newest price is old for the data's own frequency."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from procurement import buying
from procurement.recommend import Policy, recommend


def _forecast(start: str, prices: list[float], freq: str = "D") -> pd.DataFrame:
    dates = pd.date_range(start, periods=len(prices), freq=freq)
    first = prices[0]
    return pd.DataFrame(
        {
            "sku": "A",
            "date": dates,
            "y_pred": prices,
            "lo_80": [p * 0.99 for p in prices],
            "hi_80": [p * 1.01 for p in prices],
            "p_cheaper": [0.0] + [0.95 if p < first else 0.05 for p in prices[1:]],
            "expected_saving": [first - p for p in prices],
        }
    )


def test_a_weekend_low_is_never_the_buy_day() -> None:
    # Wednesday 1 Jul 2026: the lowest forecast falls on Saturday 4 and Sunday 5
    fc = _forecast("2026-07-01", [100, 99, 98, 90, 90, 97, 99, 100])
    free = recommend(fc, Policy(0.7, 0.5)).iloc[0]
    assert free["buy_date"].weekday() >= 5  # the plain argmax would pick the weekend
    rec = buying.decide(fc, "A", buying.Decision(10, float("inf"), 1.0, 0, 0.7))
    assert rec["buy_date"].weekday() < 5
    assert rec["buy_date"] == pd.Timestamp("2026-07-06")  # Monday, the cheapest working day


def _catalog(calendars: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sku": list(calendars),
            "supplier": [f"sup-{s}" for s in calendars],
            "on_hand": float("nan"),
            "lead_time_days": float("nan"),
            "working_days": list(calendars.values()),
        }
    )


def test_buy_days_fall_on_each_suppliers_own_working_days() -> None:
    """The same forecast, four suppliers: the buy day is the cheapest day each one works."""
    # Wed 1 Jul 2026 .. Tue 14 Jul: lowest on Sat 4, then Sun 5, Mon 6, Thu 9
    path = [100, 99, 98, 90, 91, 93, 96, 97, 94, 99, 99, 100, 100, 100]
    cals = {"A": "Mon-Fri", "B": "Mon-Sat", "C": "Tue,Thu", "D": "Sun"}
    fc = pd.concat([_forecast("2026-07-01", path).assign(sku=s) for s in cals])
    recs = buying.advice_table(
        # only the horizon and the (absent) promotion calendars are read
        SimpleNamespace(horizon=14, promotion_info=None, stale_prices=dict),  # type: ignore[arg-type]
        _catalog(cals),
        pd.Series(dtype=float),
        Policy(0.7, 0.5),
        forecast=fc,
    ).set_index("sku")
    assert recs["buy_date"].dt.strftime("%a %d").to_dict() == {
        "A": "Mon 06",
        "B": "Sat 04",
        "C": "Thu 09",
        "D": "Sun 05",
    }
    rec = buying.decide(
        fc[fc["sku"] == "C"],
        "C",
        buying.Decision(10, float("inf"), 1.0, 0, 0.7),
        working_days=(1, 3),
    )
    assert rec["buy_date"] == pd.Timestamp("2026-07-09")


def test_no_buy_day_falls_on_a_day_its_supplier_does_not_work() -> None:
    """Random daily forecasts and random calendars: every buy day to wait for is a working day
    of the product's supplier (buy now is the first forecast day, the reference)."""
    import numpy as np

    from procurement import workdays

    rng = np.random.default_rng(5)
    cals, frames = {}, []
    for i in range(300):
        days = tuple(sorted(rng.choice(7, size=int(rng.integers(1, 7)), replace=False)))
        sku = f"P{i}"
        cals[sku] = workdays.text(days)
        start = pd.Timestamp("2026-07-01") + pd.Timedelta(int(rng.integers(0, 7)), "D")
        walk = 100 + np.cumsum(rng.normal(0, 2, 14))
        frames.append(_forecast(str(start.date()), list(walk)).assign(sku=sku))
    recs = buying.advice_table(
        SimpleNamespace(horizon=14, promotion_info=None, stale_prices=dict),  # type: ignore[arg-type]
        _catalog(cals),
        pd.Series(dtype=float),
        Policy(0.7, 0.5),
        forecast=pd.concat(frames),
    )
    waits = recs[~recs["buy_now"]]
    assert len(waits) > 100
    for sku, day in zip(waits["sku"], waits["buy_date"], strict=True):
        assert day.weekday() in workdays.parse(cals[sku]), (sku, cals[sku], day)
    now = recs[recs["buy_now"]]
    assert (now["buy_date"] == now["first_date"]).all()


def test_working_days_are_read_as_buyers_write_them() -> None:
    from procurement import workdays

    assert workdays.normalized("mon - fri") == "Mon-Fri"
    assert workdays.normalized("Monday-Saturday") == "Mon-Sat"
    assert workdays.normalized("tue/thu") == "Tue,Thu"
    assert workdays.normalized("Mon,Tue,Sat") == "Mon,Tue,Sat"
    assert workdays.parse("Fri-Mon") == (0, 4, 5, 6)  # over the weekend
    assert workdays.text((0, 1, 2, 4)) == "Mon-Wed,Fri"
    for bad in ("", "Funday", "Mon-", "weekdays", "T"):
        with pytest.raises(ValueError, match="is not a list of working days"):
            workdays.parse(bad)


def test_weekly_forecasts_keep_every_period() -> None:
    fc = _forecast("2026-07-05", [100, 99, 90, 95], freq="W-SUN")  # all Sundays
    assert len(buying.on_working_days(fc)) == 4


def test_a_buy_day_on_the_last_forecast_day_says_it_may_fall_further() -> None:
    fc = _forecast("2026-07-06", [100, 99, 98, 97, 96])  # Monday to Friday, falling
    rec = buying.decide(fc, "A", buying.Decision(10, float("inf"), 1.0, 0, 0.7))
    assert rec["buy_date"] == pd.Timestamp("2026-07-10")
    assert "may fall further" in rec["reason"]
    fc = _forecast("2026-07-06", [100, 96, 98, 99, 99])
    rec = buying.decide(fc, "A", buying.Decision(10, float("inf"), 1.0, 0, 0.7))
    assert rec["buy_date"] == pd.Timestamp("2026-07-07") and "may fall" not in rec["reason"]


@pytest.mark.parametrize(
    ("last", "freq", "today", "stale"),
    [
        ("2026-06-30", "D", "2026-07-02", False),
        ("2026-06-30", "D", "2026-07-04", True),
        ("2026-06-29", "W-MON", "2026-07-15", False),
        ("2026-06-29", "W-MON", "2026-07-21", True),
        ("2019-01-14", "D", "2026-12-02", True),
    ],
)
def test_old_data_is_flagged_by_its_own_frequency(
    last: str, freq: str, today: str, stale: bool
) -> None:
    msg = buying.stale_data(dt.date.fromisoformat(last), freq, dt.date.fromisoformat(today))
    assert (msg is not None) == stale
    if msg and last.startswith("2019"):
        assert "14 Jan 2019" in msg and "7.9 years" in msg


@pytest.mark.parametrize(
    ("name", "freq", "words"),
    [
        ("lag1", "D", "the last price"),
        ("lag28", "D", "price 4 weeks ago"),
        ("lag3", "D", "price 3 days ago"),
        ("lag2", "W-MON", "price 2 weeks ago"),
        ("rolling_std_lag1_window_size28", "D", "price swings over 4 weeks"),
        ("below_high_lag1_window56", "D", "price below its 8 weeks high"),
        ("drv_fx_chg_l7", "D", "exchange rate change over 1 week"),
        ("index_chg_w28", "D", "commodity index change over 4 weeks"),
        ("pass_index_chg_l7", "D", "pass-through: commodity index change over 1 week"),
        ("dayofweek", "D", "day of the week"),
        ("something_new", "D", "something_new"),
    ],
)
def test_feature_names_in_a_buyers_words(name: str, freq: str, words: str) -> None:
    from ui.features import feature_words

    assert feature_words(name, freq) == words


def test_driver_effects_of_the_whole_catalog_equal_one_product_at_a_time(fitted_model) -> None:
    """The batch measure the Product page reads equals asking the model product by product."""
    effects = buying.driver_effects(fitted_model)
    assert set(effects) == set(fitted_model.products)
    moved_any = False
    for sku in fitted_model.products[:4]:
        base = fitted_model.predict(ids=[sku])["y_pred"].to_numpy()[-1]
        for key, _label in buying.what_if_drivers(fitted_model, sku):
            alone = fitted_model.predict(ids=[sku], overrides={key: 1.2})["y_pred"].to_numpy()[-1]
            assert effects[sku][key] == pytest.approx(100 * (alone - base) / abs(base), abs=1e-6)
            moved_any |= abs(effects[sku][key]) > 0
    assert moved_any


def test_a_20pct_move_of_a_commodity_products_main_driver_moves_its_forecast_2pct(
    fitted_model, small_data
) -> None:
    """The demo's drivers matter where the generator made them matter, and the model shows it:
    the products most tied to their category's commodity index move by 2% or more when the
    index rises 20%; the products the generator made independent of every driver barely move."""
    effects = buying.driver_effects(fitted_model)
    truth = small_data.effects.set_index("sku")
    index_move = {
        sku: next((v for k, v in moves.items() if k.startswith("index:")), 0.0)
        for sku, moves in effects.items()
    }
    tied = truth[(truth["kind"] == "commodity") & (truth["index_beta"] >= 0.8)].index
    tied = [s for s in tied if s in index_move]
    assert tied
    # (the 12-product fixture holds two such products; one of them the small model leaves at
    # its last price; on the 200-product demo 40 of its 42 move by 2% or more)
    assert max(index_move[s] for s in tied) >= 2.0
    loose = truth[(truth["kind"] == "shelf") & (truth["index_beta"] <= 0.05)].index
    loose = [s for s in loose if s in index_move]
    assert loose
    assert np.median([abs(index_move[s]) for s in loose]) < 1.0


def test_the_learned_policy_in_a_buyers_words_for_the_company_and_for_each_kind() -> None:
    from ui.features import policy_words

    one = {"min_confidence": 0.6, "min_saving_pct": 0.5, "target_price": True, "grace_steps": 3}
    assert policy_words(one, 14, "D") == (
        "Advice learned from the backtest: wait only when a later day is at least 60% likely to "
        "be cheaper by 0.5% or more. Each wait has a target price, the buy day's forecast: buy on "
        "the first day whose price is down to it, before the buy day or up to 3 days after it, "
        "and on the last of those days if it has not come. That saved more in the backtest than "
        "waiting for the buy day alone."
    )
    never = {"min_confidence": 1.0, "min_saving_pct": 0.0, "target_price": False, "grace_steps": 0}
    kinds = {
        **one,
        "kinds": {
            "drifts": {**never, "products": 1},
            "reverts": {**one, "target_price": False, "products": 5},
        },
    }
    assert policy_words(kinds, 14, "D") == (
        "Advice learned from the backtest, for each kind of product on its own windows. For the "
        "1 product whose price drifts like a random walk (a commodity after its market): never "
        "wait (no threshold saved money). For the 5 products whose price comes back after a dip "
        "(promotions, shocks that fade): wait only when a later day is at least 60% likely to be "
        "cheaper by 0.5% or more; no target price: buy on the advised day."
    )


def test_products_too_short_to_train_on_are_told_apart_from_new_ones(small_data) -> None:
    from conftest import training_data

    from procurement.forecast.model import ModelParams, fit_price_model, min_history

    data = training_data(small_data)
    # a product first priced five weeks before the end: too short a history to train on
    young = data.prices[data.prices["unique_id"] == "SKU-00002"].tail(35).assign(unique_id="NEW-1")
    # and one quoted weekly among the daily prices: forecast, and said to be forecast daily
    weekly = data.prices[data.prices["unique_id"] == "SKU-00003"].iloc[::7]
    data.prices = pd.concat(
        [data.prices, young, weekly.assign(unique_id="WEEKLY")], ignore_index=True
    )
    # with their category and sales, as the products they copy (no null features)
    cats = dict(data.categories or {})
    data.categories = {**cats, "NEW-1": cats["SKU-00002"], "WEEKLY": cats["SKU-00003"]}
    assert data.sales is not None
    sold = {k: data.sales[data.sales["unique_id"] == k] for k in ("SKU-00002", "SKU-00003")}
    data.sales = pd.concat(
        [
            data.sales,
            sold["SKU-00002"].tail(35).assign(unique_id="NEW-1"),
            sold["SKU-00003"].iloc[::7].assign(unique_id="WEEKLY"),
        ],
        ignore_index=True,
    )
    model = fit_price_model(data, "D", 14, ModelParams(n_estimators=20, max_history=240))
    assert model.too_short == {"NEW-1"} and "NEW-1" not in model.last_price
    assert "WEEKLY" in model.last_price
    assert model.metrics["sparse_series"] == {"products": 1, "skus": ["WEEKLY"], "days": 5}
    assert model.min_periods == min_history(model.spec, 14) > 35
    products = pd.DataFrame({"sku": ["SKU-00001", "NEW-1", "NEW-2"]})
    recs = pd.DataFrame({"sku": ["SKU-00001"]})
    # NEW-2 came after the training: a retrain brings it in; NEW-1 needs more prices first
    assert buying.unforecast(products, recs, model) == (["NEW-1"], ["NEW-2"])
    assert buying.unforecast(products, recs, None) == ([], ["NEW-1", "NEW-2"])
