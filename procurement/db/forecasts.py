"""Stored forecasts of a company's current model, so pages read instead of predicting."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from procurement.db.models import PriceForecast

COLUMNS = [
    "sku",
    "date",
    "y_pred",
    "lo_80",
    "hi_80",
    "lo_95",
    "hi_95",
    "p_cheaper",
    "expected_saving",
    "p_not_dearer",
]


def store_forecast(session: Session, tenant_id: int, version: str, fc: pd.DataFrame) -> int:
    """Replace the company's stored forecasts with ``fc`` (one transaction: readers see old or new)."""
    session.execute(delete(PriceForecast).where(PriceForecast.tenant_id == tenant_id))
    if "p_not_dearer" not in fc:
        fc = fc.assign(p_not_dearer=fc["p_cheaper"])
    rows = fc[COLUMNS].assign(tenant_id=tenant_id, version=version)
    rows["date"] = pd.to_datetime(rows["date"]).dt.date
    records = rows.to_dict("records")
    for start in range(0, len(records), 20_000):
        session.execute(insert(PriceForecast), records[start : start + 20_000])
    return len(records)


def load_forecast(
    session: Session, tenant_id: int, version: str, skus: list[str] | None = None
) -> pd.DataFrame | None:
    """The stored forecasts of that model version (of ``skus`` only, when given), or None when
    there are none (yet)."""
    cols = [getattr(PriceForecast, c) for c in COLUMNS]
    stmt = select(*cols).where(
        PriceForecast.tenant_id == tenant_id, PriceForecast.version == version
    )
    if skus is not None:
        stmt = stmt.where(PriceForecast.sku.in_(skus))
    rows = session.execute(stmt).all()
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["date"] = pd.to_datetime(df["date"])
    df["p_not_dearer"] = pd.to_numeric(df["p_not_dearer"]).fillna(df["p_cheaper"])
    return df.sort_values(["sku", "date"], ignore_index=True)
