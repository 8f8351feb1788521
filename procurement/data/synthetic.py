"""Reproducible synthetic catalog with prices that behave like purchased goods.

Two kinds of product sit side by side, as on a real buyer's list:

* **commodities** follow their category's commodity index and the exchange rate with a one-week
  delay (supplier price lists lag the market) plus a random walk of their own: nobody can time
  them, and the honest advice is "buy now";
* **shelf goods** revert to a list price after shocks, are cheaper on one weekday, and go on
  promotion every few weeks on a cycle that drifts (the next promotion comes 3 to 8 weeks after
  the last, give or take a few days): a buyer who knows the pattern waits for it.

Everything is drawn from one seed; ``effects`` records what each price really depends on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

CATEGORIES = (
    "steel",
    "copper",
    "plastics",
    "paper",
    "grain",
    "coffee",
    "packaging",
    "chemicals",
)
UNITS = {
    "steel": "t",
    "copper": "kg",
    "plastics": "kg",
    "paper": "ream",
    "grain": "bag",
    "coffee": "kg",
    "packaging": "box",
    "chemicals": "l",
}
PASS_THROUGH_LAG = 7
COMMODITY_SHARE = 0.4


@dataclass(frozen=True)
class SyntheticData:
    prices: (
        pd.DataFrame
    )  # import format: sku,date,price,name,supplier,currency,category,unit,quantity
    drivers: pd.DataFrame  # name,date,value
    stock: pd.DataFrame  # sku,on_hand,lead_time_days
    # What each price really depends on: sku, category, kind ("commodity" or "shelf"),
    # index_beta (elasticity to the category's commodity index), fx_gamma (to the exchange rate),
    # promo_cycle (mean days between promotions, 0 for none). Lets tests pick products by truth.
    effects: pd.DataFrame


def _random_walk(rng: np.random.Generator, n: int, sigma: float, drift: float = 0.0) -> np.ndarray:
    return np.cumsum(drift + sigma * rng.standard_normal(n))


def _promotions(
    rng: np.random.Generator, n_products: int, n_days: int, cycle: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """Boolean (products x days): promotions whose gaps drift around each product's cycle."""
    promo = np.zeros((n_products, n_days), dtype=bool)
    for i in range(n_products):
        if cycle[i] <= 0:
            continue
        day = int(rng.integers(0, cycle[i]))
        while day < n_days:
            promo[i, day : day + length[i]] = True
            day += max(int(length[i]) + 7, round(float(cycle[i] + rng.normal(0, 0.05 * cycle[i]))))
    return promo


def _ar1(
    rng: np.random.Generator, n_products: int, n: int, phi: np.ndarray, shocks: np.ndarray
) -> np.ndarray:
    out = np.zeros((n_products, n))
    for t in range(1, n):
        out[:, t] = phi * out[:, t - 1] + shocks[:, t]
    return out


def generate(
    n_products: int = 200,
    n_days: int = 730,
    seed: int = 7,
    end: dt.date | None = None,
    n_suppliers: int | None = None,
) -> SyntheticData:
    """Generate ``n_products`` x ``n_days`` of daily prices ending on ``end`` (default: yesterday)."""
    if n_products < 1 or n_days < 60:
        raise ValueError("need at least 1 product and 60 days")
    rng = np.random.default_rng(seed)
    end = end or (dt.date.today() - dt.timedelta(days=1))
    dates = pd.date_range(end=pd.Timestamp(end), periods=n_days, freq="D")
    # Drivers need a week of history before the first price date because of the pass-through lag.
    lag = PASS_THROUGH_LAG
    n_ext = n_days + lag
    ext_dates = pd.date_range(end=dates[-1], periods=n_ext, freq="D")

    log_fx = _random_walk(rng, n_ext, 0.004)
    log_idx = {c: _random_walk(rng, n_ext, 0.012, drift=rng.normal(0, 0.0002)) for c in CATEGORIES}
    drivers = pd.concat(
        [pd.DataFrame({"name": "fx", "date": ext_dates.date, "value": 5.0 * np.exp(log_fx)})]
        + [
            pd.DataFrame({"name": f"index:{c}", "date": ext_dates.date, "value": 100 * np.exp(v)})
            for c, v in log_idx.items()
        ],
        ignore_index=True,
    )

    n_sup = n_suppliers or max(3, min(40, n_products // 25))
    sup_cheap_dow = rng.integers(0, 7, n_sup)
    sup_cycle = rng.integers(21, 57, n_sup)  # mean days between a supplier's promotions

    cat = rng.integers(0, len(CATEGORIES), n_products)
    sup = rng.integers(0, n_sup, n_products)
    commodity = rng.random(n_products) < COMMODITY_SHARE
    if n_products >= 2:  # both kinds in every catalog
        commodity[0], commodity[1] = True, False
    base = np.exp(rng.uniform(np.log(5), np.log(500), n_products))
    beta = np.where(
        commodity, rng.uniform(0.6, 1.0, n_products), rng.uniform(0.0, 0.15, n_products)
    )
    gamma = np.where(commodity, rng.uniform(0.1, 0.5, n_products), 0.0)
    weekly_amp = np.where(commodity, 0.0, rng.uniform(0.01, 0.04, n_products))
    yearly_amp = rng.uniform(0.0, 0.04, n_products)
    yearly_phase = rng.uniform(0, 2 * np.pi, n_products)
    has_promo = ~commodity & (rng.random(n_products) < 0.85)
    cycle = np.where(has_promo, sup_cycle[sup] + rng.integers(-3, 4, n_products), 0)
    promo_len = rng.integers(2, 6, n_products)
    promo_depth = rng.uniform(0.06, 0.2, n_products)
    base_qty = np.exp(rng.uniform(np.log(5), np.log(200), n_products))

    dow = dates.dayofweek.to_numpy()
    doy = dates.dayofyear.to_numpy()
    idx_matrix = np.stack([log_idx[c] for c in CATEGORIES])  # (n_cat, n_ext)
    # value at t - lag, aligned with price dates
    idx_lagged = idx_matrix[:, :n_days] - idx_matrix[:, :1]
    fx_lagged = log_fx[:n_days] - log_fx[0]

    # Demand: weekly pattern plus a persistent shock; promotions sell more.
    shock = np.zeros((n_products, n_ext))
    eps = 0.05 * rng.standard_normal((n_products, n_ext))
    for i in range(1, n_ext):
        shock[:, i] = 0.95 * shock[:, i - 1] + eps[:, i]
    promo = _promotions(rng, n_products, n_days, cycle, promo_len)
    weekday_demand = np.where(dow >= 5, -0.4, 0.0)[None, :]
    demand_log = shock[:, lag:] + weekday_demand + 0.5 * promo
    quantity = rng.poisson(base_qty[:, None] * np.exp(demand_log))

    # Own price moves: commodities wander (random walk), shelf goods revert to their list price
    # after a shock (AR(1) with occasional jumps that decay over a few weeks).
    own_rw = np.cumsum(0.004 * rng.standard_normal((n_products, n_days)), axis=1)
    jumps = (rng.random((n_products, n_days)) < 1 / 45) * rng.normal(0, 0.08, (n_products, n_days))
    phi = rng.uniform(0.85, 0.96, n_products)
    own_ar = _ar1(
        rng, n_products, n_days, phi, 0.006 * rng.standard_normal((n_products, n_days)) + jumps
    )
    own = np.where(commodity[:, None], own_rw, own_ar)

    log_price = (
        np.log(base)[:, None]
        + beta[:, None] * idx_lagged[cat]
        + gamma[:, None] * fx_lagged[None, :]
        + own
        - weekly_amp[:, None] * (dow[None, :] == sup_cheap_dow[sup][:, None])
        + yearly_amp[:, None] * np.sin(2 * np.pi * doy[None, :] / 365.25 + yearly_phase[:, None])
        - promo_depth[:, None] * promo
        + 0.002 * rng.standard_normal((n_products, n_days))
    )
    price = np.round(np.exp(log_price), 2)

    width = len(str(n_products))
    skus = np.array([f"SKU-{i + 1:0{max(width, 5)}d}" for i in range(n_products)])
    cat_names = np.array(CATEGORIES)[cat]
    names = np.char.add(np.char.add(np.char.capitalize(cat_names.astype(str)), " item "), skus)
    sup_names = np.array([f"Supplier {chr(65 + s % 26)}{s // 26 or ''}" for s in range(n_sup)])
    # text columns repeat one string object per product (object arrays), not one per row
    prices = pd.DataFrame(
        {
            "sku": np.repeat(skus.astype(object), n_days),
            "date": np.tile(dates.date, n_products),
            "price": price.ravel(),
            "name": np.repeat(names.astype(object), n_days),
            "supplier": np.repeat(sup_names[sup].astype(object), n_days),
            "currency": "USD",
            "category": np.repeat(cat_names.astype(object), n_days),
            "unit": np.repeat(np.array([UNITS[c] for c in cat_names], dtype=object), n_days),
            "quantity": quantity.ravel().astype(float),
        }
    )
    stock = pd.DataFrame(
        {
            "sku": skus,
            "on_hand": np.round(base_qty * rng.uniform(3, 30, n_products)),
            "lead_time_days": rng.integers(1, 10, n_products),
        }
    )
    effects = pd.DataFrame(
        {
            "sku": skus,
            "category": cat_names,
            "kind": np.where(commodity, "commodity", "shelf"),
            "index_beta": beta,
            "fx_gamma": gamma,
            "promo_cycle": cycle,
        }
    )
    return SyntheticData(prices=prices, drivers=drivers, stock=stock, effects=effects)
