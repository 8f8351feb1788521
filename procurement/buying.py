"""What a buyer sees: advice per product, sized by demand and constrained by stock and lead time.

Pure functions of DataFrames and a model; ``procurement.actions`` loads what they need from the
database and the pages and the CLI render the result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from procurement import workdays
from procurement.forecast.model import PriceModel
from procurement.recommend import Policy, recommend, says_rising, shown_percent


@dataclass(frozen=True)
class Decision:
    """The buyer's side of a what-if: how much is needed and how long they can wait."""

    quantity: float
    on_hand: float
    daily_demand: float
    lead_time_days: int
    min_confidence: float


def advice_policy(model: PriceModel | None, min_confidence: float, min_saving_pct: float) -> Policy:
    """The thresholds the model learned from its backtest (``choose_policy``), else the
    configured defaults (a model trained before policies were learned)."""
    learned = getattr(model, "policy", None)
    return learned if learned is not None else Policy(min_confidence, min_saving_pct)


def max_wait_days(on_hand: pd.Series, daily_demand: pd.Series, lead_time: pd.Series) -> pd.Series:
    """Days a buyer can wait before ordering without running out: stock cover minus lead time."""
    cover = on_hand / daily_demand.where(daily_demand > 0)
    return np.floor((cover - lead_time).clip(lower=0)).fillna(np.inf)


def advice_table(
    model: PriceModel,
    products: pd.DataFrame,
    demand: pd.Series,
    policy: Policy,
    overrides: Mapping[str, float] | None = None,
    forecast: pd.DataFrame | None = None,
    stale: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """One row per product: recommendation, quantity needed over the horizon, total saving.
    ``stale``: products whose newest price is older than the others' (``PriceModel.stale_prices``;
    None: the model's own), whose advice says so."""
    fc = forecast if forecast is not None else model.predict(overrides=overrides)
    cat = products.set_index("sku")
    dem = demand.reindex(cat.index).fillna(0.0)
    qty = (dem * model.horizon).round()
    wait = max_wait_days(
        cat["on_hand"].astype(float).fillna(np.inf),
        dem,
        cat["lead_time_days"].astype(float).fillna(0),
    )
    recs = _explained(
        recommend(on_working_days(fc, calendars(products)), policy, max_wait=wait, quantity=qty),
        model.stale_prices() if stale is None else stale,
    )
    recs = recs.merge(products, on="sku", how="left")
    recs["quantity"] = recs["sku"].map(qty).fillna(0.0)
    recs["daily_demand"] = recs["sku"].map(dem).fillna(0.0)
    recs["promotion_due"] = recs["sku"].map(promotion_due(model))
    return recs


def promotion_due(model: PriceModel) -> pd.Series:
    """Per product whose forecast follows a promotion calendar: the day its next promotion is
    due, where that is within the forecast's days and none is running (datetime64)."""
    rows = {
        sku: info
        for sku, info in (model.promotion_info or {}).items()
        if not info.get("running") and int(info["due_step"]) <= model.horizon
    }
    if not rows or model.promotions_from is None:
        return pd.Series(dtype="datetime64[ns]")
    return pd.Series({sku: _due_day(model, info) for sku, info in rows.items()})


def _due_day(model: PriceModel, info: Mapping[str, float]) -> pd.Timestamp:
    """The day of a calendar's ``due_step``: that many periods after its model's data."""
    assert model.promotions_from is not None
    steps = pd.date_range(
        model.promotions_from, periods=int(info["due_step"]) + 1, freq=model.spec.freq
    )
    return steps[-1]


# The advice a buyer reads, in this order: the Recommendations page and `procurement recommend`
ADVICE_COLUMNS = [
    "sku",
    "name",
    "category",
    "supplier",
    "buy_date",
    "target_price",
    "last_buy_date",
    "first_price",
    "buy_price",
    "saving",
    "saving_pct",
    "quantity",
    "saving_total",
    "confidence",
    "reason",
    "promotion_due",
]

WORKING_DAYS = workdays.MON_FRI  # the days a supplier takes orders unless it says otherwise
Calendar = tuple[int, ...] | Mapping[str, tuple[int, ...]]


def calendars(products: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    """Each product's working days, from its supplier's (``working_days`` of
    ``catalog.load_products``); Monday to Friday where the catalog does not say."""
    if "working_days" not in products.columns:
        return {}
    texts = products["working_days"].where(products["working_days"].astype(bool), None)
    parsed = {d: workdays.parse(d) for d in texts.dropna().unique()}
    return {
        str(sku): parsed.get(days, WORKING_DAYS)
        for sku, days in zip(products["sku"], texts, strict=True)
    }


def on_working_days(fc: pd.DataFrame, working_days: Calendar = WORKING_DAYS) -> pd.DataFrame:
    """The forecast rows of days a buyer can order on: ``working_days`` for every product, or
    per sku (its supplier's calendar; Monday to Friday for a sku it does not name). Daily
    forecasts lose the days the supplier does not work (the first day, today, stays as the
    reference the saving is measured against); weekly or monthly forecasts, one row per period,
    are kept whole."""
    if fc.empty:
        return fc
    dates = pd.to_datetime(fc["date"])
    gap = dates.groupby(fc["sku"]).diff().dt.days.median()
    if not gap or gap > 1:
        return fc
    first = dates.groupby(fc["sku"]).transform("min")
    if isinstance(working_days, Mapping):
        # one bit per weekday and product: the row is kept when its weekday's bit is set
        mask = {sku: sum(1 << d for d in days) for sku, days in working_days.items()}
        default = sum(1 << d for d in WORKING_DAYS)
        bits = fc["sku"].map(mask).fillna(default).astype(int).to_numpy()
        works = (bits >> dates.dt.weekday.to_numpy()) & 1 == 1
    else:
        works = dates.dt.weekday.isin(working_days).to_numpy()
    return fc[works | (dates == first).to_numpy()]


def _explained(recs: pd.DataFrame, stale: Mapping[str, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Advice whose buy day is the forecast's last day says so: the price may keep falling.
    A product whose newest price is older than the others' (``stale``: sku -> its date) says
    so too: its advice takes that price as today's."""
    edge = recs["last_day"].fillna(False).astype(bool)
    recs.loc[edge, "reason"] = (
        recs.loc[edge, "reason"] + "; the last day forecast, so it may fall further after it"
    )
    old = recs["sku"].map(stale or {})
    known = old.notna()
    if known.any():
        recs.loc[known, "reason"] = recs.loc[known, "reason"] + [
            f"; its newest price is from {pd.Timestamp(day):%a %d %b %Y}, taken as today's"
            for day in old[known]
        ]
    return recs


STALE_PERIODS = 3


def stale_data(last: dt.date, freq: str, today: dt.date) -> str | None:
    """A warning when the newest price is older than ``STALE_PERIODS`` periods of the data's own
    frequency (three days for daily prices, three weeks for weekly ones), else None."""
    step = pd.tseries.frequencies.to_offset(freq)
    if pd.Timestamp(today) <= pd.Timestamp(last) + STALE_PERIODS * step:
        return None
    days = (today - last).days
    age = f"{days / 365.25:.1f} years" if days >= 730 else f"{days} days"
    return (
        f"The newest price is from {last:%d %b %Y}, {age} ago: this advice is only as fresh as "
        "the data. Import recent prices or fetch the sources on the Data page."
    )


def unforecast(
    products: pd.DataFrame, recs: pd.DataFrame, model: PriceModel | None
) -> tuple[list[str], list[str]]:
    """The catalog's products without advice, split: those whose price history was too short
    for ``model`` to train on (they come in once they have ``model.min_periods`` periods), and
    those new since it was trained (a retrain brings them in). Models saved before recorded no
    short products."""
    absent = sorted(set(products["sku"].astype(str)) - set(recs["sku"].astype(str)))
    short: frozenset[str] = getattr(model, "too_short", frozenset())
    return [u for u in absent if u in short], [u for u in absent if u not in short]


def summary(recs: pd.DataFrame) -> dict[str, float]:
    """Headline numbers for the overview page."""
    wait = ~recs["buy_now"]
    return {
        "products": len(recs),
        "cheaper_later": int(wait.sum()),
        "rising": int(says_rising(recs).sum()),
        "total_saving": float(recs.loc[wait, "saving_total"].sum()),
        "spend": float((recs["first_price"] * recs["quantity"]).sum()),
    }


def decide(
    fc: pd.DataFrame,
    sku: str,
    decision: Decision,
    min_saving_pct: float = 0.5,
    working_days: tuple[int, ...] = WORKING_DAYS,
    policy: Policy | None = None,
    price_from: pd.Timestamp | None = None,
) -> pd.Series:
    """The advice on one product's forecast for the buyer's situation (quantity, stock, lead
    time, required confidence), on its supplier's ``working_days``; ``policy``: the model's
    learned one (its confidence map), with the buyer's thresholds; ``price_from``: the date of
    its newest price, where that is older than the company's newest day."""
    wait = max_wait_days(
        pd.Series({sku: decision.on_hand}),
        pd.Series({sku: decision.daily_demand}),
        pd.Series({sku: float(decision.lead_time_days)}),
    )
    return _explained(
        recommend(
            on_working_days(fc, working_days),
            dataclasses.replace(
                (policy or Policy()).of(sku),
                min_confidence=decision.min_confidence,
                min_saving_pct=min_saving_pct,
            ),
            max_wait=wait,
            quantity=pd.Series({sku: decision.quantity}),
        ),
        None if price_from is None else {sku: price_from},
    ).iloc[0]


def what_if_drivers(model: PriceModel, sku: str) -> list[tuple[str, str]]:
    """(override key, label) of the drivers this product's forecast depends on."""
    out = []
    if any(c.startswith("drv_fx_") for c in model.exog):
        out.append(("fx", "Exchange rate"))
    cat = model.categories.get(sku)
    if cat and any(c.startswith("index_") for c in model.exog):
        out.append((f"index:{cat}", f"{cat.title()} commodity index"))
    if any(c.startswith("demand_") for c in model.exog):
        out.append(("demand", "Demand"))
    return out


def driver_effects(model: PriceModel, pct: float = 20.0) -> dict[str, dict[str, float]]:
    """Per product and what-if driver: how much its last forecast moves (in %) when the driver
    rises by ``pct`` over the horizon. Measured on the model itself, so the page can say when a
    product does not follow a driver instead of showing a slider that seems broken. One batch
    prediction per driver for the whole catalog (each commodity index moves its own products)."""
    factor = 1 + pct / 100
    base = model.predict().groupby("sku")["y_pred"].last()
    moves: dict[str, dict[str, float]] = {}
    cats = sorted({c for c in model.categories.values() if c})
    batches = {
        "fx": {"fx": factor},
        "index": {f"index:{c}": factor for c in cats},
        "demand": {"demand": factor},
    }
    needed = {key.split(":")[0] for sku in model.products for key, _ in what_if_drivers(model, sku)}
    for name in needed:
        moved = model.predict(overrides=batches[name]).groupby("sku")["y_pred"].last()
        change = 100 * (moved - base) / base.abs().where(base != 0)
        for sku, v in change.fillna(0.0).items():
            moves.setdefault(str(sku), {})[name] = float(v)
    return {
        sku: {
            key: moves.get(sku, {}).get(key.split(":")[0], 0.0)
            for key, _ in what_if_drivers(model, sku)
        }
        for sku in model.products
    }


def backtest_record(model: PriceModel, sku: str) -> str | None:
    """The product's own record in the model's backtest, in one sentence (None if unseen)."""
    rec = model.record
    if rec is None or sku not in rec.index:
        return None
    r = rec.loc[sku]
    windows, waits, paid = int(r["windows"]), int(r["waits"]), int(r["paid_off"])
    if waits == 0:
        return (
            f"Backtest record: over the last {windows} backtest windows the advice for this "
            "product was always to buy at once."
        )
    text = (
        f"Backtest record: over the last {windows} windows the advice said wait {waits} times; "
        f"waiting paid off {paid} times"
    )
    if paid:
        text += f", saving {r['median_saving_pct']:.1f}% (median) when it did"
    return text + "."


def promotion_pattern(
    model: PriceModel,
    sku: str,
    today: dt.date | None = None,
    newer: pd.DataFrame | None = None,
) -> str | None:
    """The product's promotion calendar in one sentence (None without one). ``newer``: the
    product's prices (``date, price``), of which those after the model's data count."""
    info = (model.promotion_info or {}).get(sku)
    if info is not None and newer is not None and len(newer):
        info = model.promotion_now(sku, newer)
    if info is None or model.promotions_from is None:
        return None
    due = _due_day(model, info).date()
    length = int(info["length"])
    text = (
        f"Promotions: about every {info['cycle']:.0f} days, usually {info['depth']:.0%} off "
        f"for {length} {'days' if length > 1 else 'day'}; "
    )
    end = model.last_date
    if info.get("seen_after_fit") and newer is not None and len(newer):
        end = pd.Timestamp(pd.to_datetime(newer["date"]).max())
    began = end - pd.Timedelta(days=int(info.get("since", 0)))
    if info.get("seen_after_fit"):
        # a fall in prices newer than the model: the forecast follows the model until a retrain
        state = "is still on" if info.get("running") else "has ended"
        return text + (
            f"one began on {began:%a %d %b}, after the model was trained, and {state}; the "
            "calendar moves on at the next retrain."
        )
    if info.get("running"):
        return text + f"one began on {began:%a %d %b} and was still on when the data ends."
    if today is not None and due < today:
        return text + f"the next was due around {due:%a %d %b}."
    if int(info["due_step"]) > model.horizon:
        return text + f"the next is due around {due:%a %d %b}, after the forecast's horizon."
    return (
        text + f"the next is due around {due:%a %d %b} (the forecast counts on it there with "
        f"{int(shown_percent(info['due_chance']))}% chance)."
    )
