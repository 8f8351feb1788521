"""Demo data: a synthetic company and, optionally, real EIA energy prices as a second company."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from procurement.config import PROJECT_ROOT
from procurement.data.importers import read_price_csv, validate_prices
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
) -> history.UpsertCounts:
    """Generate and store a synthetic catalog through the validated import path."""
    data = generate(n_products, n_days, seed)
    ten = catalog.get_or_create_tenant(session, tenant, "Demo Manufacturing Co.")
    prices = validate_prices(data.prices, source="synthetic")
    counts = history.store_prices(session, ten.id, prices, progress=progress)
    history.store_drivers(session, ten.id, data.drivers)
    catalog.store_stock(session, ten.id, data.stock)
    history.record_import(session, ten.id, f"synthetic seed={seed} {n_products}x{n_days}", counts)
    return counts


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


def import_price_file(
    session: Session, tenant: str, path: str | Path, progress=None
) -> history.UpsertCounts:  # type: ignore[no-untyped-def]
    """Validate a CSV and store it in the caller's transaction (nothing is stored on error)."""
    df = read_price_csv(path)
    ten = catalog.get_or_create_tenant(session, tenant)
    counts = history.store_prices(session, ten.id, df, progress=progress)
    history.record_import(session, ten.id, str(path), counts)
    return counts
