"""Reproducible synthetic catalog with prices that behave like purchased goods.

Each price is built from parts a model can learn and a buyer would recognise:
a category commodity index and an exchange rate that pass through with a one-week delay
(supplier price lists lag the market), demand pressure, a slow trend, weekly and yearly seasonality,
and supplier promotions on a four-week cycle. Everything is drawn from one seed.
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
PROMO_CYCLE = 28
PROMO_DAYS = 3


@dataclass(frozen=True)
class SyntheticData:
    prices: (
        pd.DataFrame
    )  # import format: sku,date,price,name,supplier,currency,category,unit,quantity
    drivers: pd.DataFrame  # name,date,value
    stock: pd.DataFrame  # sku,on_hand,lead_time_days
    # What each price really depends on: sku, category, index_beta (elasticity to the category's
    # commodity index), fx_gamma (to the exchange rate). Lets tests pick a product by its drivers.
    effects: pd.DataFrame


def _random_walk(rng: np.random.Generator, n: int, sigma: float, drift: float = 0.0) -> np.ndarray:
    return np.cumsum(drift + sigma * rng.standard_normal(n))


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
    sup_phase = rng.integers(0, PROMO_CYCLE, n_sup)
    sup_depth = rng.uniform(0.06, 0.12, n_sup)
    sup_cheap_dow = rng.integers(0, 7, n_sup)

    cat = rng.integers(0, len(CATEGORIES), n_products)
    sup = rng.integers(0, n_sup, n_products)
    base = np.exp(rng.uniform(np.log(5), np.log(500), n_products))
    beta = rng.uniform(0.3, 0.9, n_products)
    gamma = rng.uniform(0.0, 0.5, n_products)
    trend = rng.normal(0, 0.03, n_products) / 365
    weekly_amp = rng.uniform(0.01, 0.03, n_products)
    yearly_amp = rng.uniform(0.02, 0.06, n_products)
    yearly_phase = rng.uniform(0, 2 * np.pi, n_products)
    base_qty = np.exp(rng.uniform(np.log(5), np.log(200), n_products))

    t = np.arange(n_days)
    dow = dates.dayofweek.to_numpy()
    doy = dates.dayofyear.to_numpy()
    idx_matrix = np.stack([log_idx[c] for c in CATEGORIES])  # (n_cat, n_ext)
    # value at t - lag, aligned with price dates
    idx_lagged = idx_matrix[:, :n_days] - idx_matrix[:, :1]
    fx_lagged = log_fx[:n_days] - log_fx[0]

    # Demand: weekly pattern plus a persistent shock; prices react to last week's demand pressure.
    shock = np.zeros((n_products, n_ext))
    eps = 0.05 * rng.standard_normal((n_products, n_ext))
    for i in range(1, n_ext):
        shock[:, i] = 0.95 * shock[:, i - 1] + eps[:, i]
    promo = ((t[None, :] - sup_phase[sup][:, None]) % PROMO_CYCLE) < PROMO_DAYS
    weekday_demand = np.where(dow >= 5, -0.4, 0.0)[None, :]
    demand_log = shock[:, lag:] + weekday_demand + 0.4 * promo
    quantity = rng.poisson(base_qty[:, None] * np.exp(demand_log))

    log_price = (
        np.log(base)[:, None]
        + trend[:, None] * t[None, :]
        + beta[:, None] * idx_lagged[cat]
        + gamma[:, None] * fx_lagged[None, :]
        + 0.15 * shock[:, :n_days]
        - weekly_amp[:, None] * (dow[None, :] == sup_cheap_dow[sup][:, None])
        + yearly_amp[:, None] * np.sin(2 * np.pi * doy[None, :] / 365.25 + yearly_phase[:, None])
        - sup_depth[sup][:, None] * promo
        + 0.004 * rng.standard_normal((n_products, n_days))
    )
    price = np.round(np.exp(log_price), 2)

    width = len(str(n_products))
    skus = np.array([f"SKU-{i + 1:0{max(width, 5)}d}" for i in range(n_products)])
    cat_names = np.array(CATEGORIES)[cat]
    names = np.char.add(np.char.add(np.char.capitalize(cat_names.astype(str)), " item "), skus)
    sup_names = np.array([f"Supplier {chr(65 + s % 26)}{s // 26 or ''}" for s in range(n_sup)])
    prices = pd.DataFrame(
        {
            "sku": np.repeat(skus, n_days),
            "date": np.tile(dates.date, n_products),
            "price": price.ravel(),
            "name": np.repeat(names, n_days),
            "supplier": np.repeat(sup_names[sup], n_days),
            "currency": "USD",
            "category": np.repeat(cat_names, n_days),
            "unit": np.repeat(np.array([UNITS[c] for c in cat_names]), n_days),
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
        {"sku": skus, "category": cat_names, "index_beta": beta, "fx_gamma": gamma}
    )
    return SyntheticData(prices=prices, drivers=drivers, stock=stock, effects=effects)
