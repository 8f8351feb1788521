"""Demo data: a synthetic company and, optionally, real EIA energy prices as a second company."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from procurement.config import PROJECT_ROOT, get_settings
from procurement.data.importers import (
    validate_prices,
)
from procurement.data.synthetic import generate
from procurement.db import catalog, history

REAL_DIR = PROJECT_ROOT / "data" / "real"
REAL_TENANT = "energy"


def seed_synthetic(
    session: Session,
    tenant: str,
    n_products: int = 200,
    n_days: int = 730,
    seed: int = 7,
    progress: Callable[[int, int], None] | None = None,
    price_factor: float = 1.0,
    end: dt.date | None = None,
) -> history.UpsertCounts:
    """Generate and store a synthetic catalog through the validated import path.

    The data ends on ``end``, else on the ``DEMO_END_DATE`` setting, else yesterday. Validated
    and stored ``SEED_CHUNK_PRODUCTS`` products at a time, so memory beyond the generated table
    stays bounded whatever the catalog's size."""
    data = generate(n_products, n_days, seed, end=end or get_settings().demo_end_date)
    if price_factor != 1.0:
        data.prices["price"] = (data.prices["price"] * price_factor).round(2)
    ten = catalog.get_or_create_tenant(
        session, tenant, "Demo Manufacturing Co." if tenant == "demo" else None
    )
    # the catalog first, as one import of the whole table would create it (same ids)
    last_rows = data.prices.drop_duplicates("sku", keep="last")
    catalog.ensure_products(session, ten.id, validate_prices(last_rows, source="synthetic"))
    counts = history.UpsertCounts()
    total = len(data.prices)
    done = 0
    with history.bulk_writes(session):
        for part in _product_chunks(data.prices, SEED_CHUNK_PRODUCTS):
            # the descriptive columns are one value per product, validated with the catalog
            # above; the rows' own columns here
            prices = validate_prices(part[list(ROW_COLUMNS)], source="synthetic")

            def step(d: int, _t: int, base: int = done) -> None:
                if progress:
                    progress(base + d, total)

            counts = counts + history.store_prices(session, ten.id, prices, progress=step)
            done += len(part)
            del prices
    history.store_drivers(session, ten.id, data.drivers)
    catalog.store_stock(session, ten.id, data.stock)
    history.record_import(session, ten.id, f"synthetic seed={seed} {n_products}x{n_days}", counts)
    return counts


SEED_CHUNK_PRODUCTS = 500
ROW_COLUMNS = ("sku", "date", "price", "quantity")


def _product_chunks(prices: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    """``prices`` in pieces of ``size`` products each (all rows of a product in one piece), in
    the order of their first row."""
    sku = prices["sku"]
    if sku.is_monotonic_increasing:  # the generator's layout: slices, no copies of the rest
        uniq = sku.drop_duplicates().to_numpy()
        starts = np.searchsorted(sku.to_numpy(), uniq[::size])
        ends = [*starts[1:], len(prices)]
        for a, b in zip(starts, ends, strict=True):
            yield prices.iloc[a:b]
        return
    codes, uniq = pd.factorize(sku)
    for first in range(0, len(uniq), size):
        yield prices[(codes >= first) & (codes < first + size)]


def seed_real(session: Session, tenant: str = REAL_TENANT, years: int = 3) -> history.UpsertCounts:
    """Load the bundled EIA daily energy spot prices (last ``years`` years) as a company."""
    path = REAL_DIR / "energy_spot_daily.csv"
    names = pd.read_csv(REAL_DIR / "energy_spot_daily_series.csv").set_index("series_id")
    raw = pd.read_csv(path, dtype=str)
    end = pd.to_datetime(raw["date"]).max()
    raw = raw[pd.to_datetime(raw["date"]) > end - pd.DateOffset(years=years)]
    raw["name"] = raw["sku"].map(names["title"]).fillna(raw["sku"])
    raw["unit"] = (
        raw["sku"].map(names["unit"]).str.replace("$ per ", "", regex=False).fillna("unit")
    )
    raw["category"] = "energy"
    raw["supplier"] = "EIA spot market"
    prices = validate_prices(raw, source=str(path))
    ten = catalog.get_or_create_tenant(session, tenant, "Energy buyer (real EIA prices)")
    counts = history.store_prices(session, ten.id, prices)
    history.record_import(session, ten.id, f"real: {Path(path).name} last {years}y", counts)
    return counts


DEMO_USERS = (
    ("buyer", "buyer", "demo", "Demo buyer"),
    ("viewer", "viewer", "demo", "Demo viewer"),
    ("energy-buyer", "buyer", REAL_TENANT, "Energy buyer"),
)


def seed_users(session: Session, settings) -> dict[str, str]:
    """The first administrator and one demo user per role, with generated passwords.

    Returns {username: password} for the users created now, for printing once; nothing is stored
    in clear. Demo users cannot log in when ENVIRONMENT=production.
    """
    from procurement import auth

    created: dict[str, str] = {}
    admin_pw = auth.ensure_admin(session, settings)
    if admin_pw:
        created["admin"] = admin_pw
    existing = {u.username for u in auth.list_users(session)}
    for username, role, tenant, name in DEMO_USERS:
        ten = catalog.get_tenant(session, tenant)
        if ten is None or username in existing:
            continue
        pw = auth.new_password()
        auth.create_user(session, username, pw, role, ten.id, name=name, is_demo=True)
        created[username] = pw
    return created
