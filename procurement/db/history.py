"""Price, sales and driver history: idempotent bulk upserts and bulk loads, scoped to a tenant."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from procurement.db.catalog import ensure_products
from procurement.db.models import DriverObservation, ImportRun, PriceObservation, Product, Sale

CHUNK = 20_000


@dataclass(frozen=True)
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.added + other.added,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )


def _upsert(
    session: Session,
    table,  # type: ignore[no-untyped-def]
    key_cols: list[str],
    value_col: str,
    incoming: pd.DataFrame,
    existing: pd.DataFrame,
    extra: dict[str, object],
    progress=None,  # type: ignore[no-untyped-def]
) -> UpsertCounts:
    """Insert new keys, update changed values, leave equal ones alone (so re-imports are no-ops)."""
    merged = incoming.merge(existing, on=key_cols, how="left", suffixes=("", "_old"))
    is_new = merged["id"].isna().to_numpy()
    old = merged[f"{value_col}_old"].to_numpy(dtype=float)
    new = merged[value_col].to_numpy(dtype=float)
    changed = ~is_new & ~np.isclose(old, new, rtol=0, atol=1e-9)
    conn = session.connection()
    inserts = merged.loc[is_new, [*key_cols, value_col]]
    for k, v in extra.items():
        inserts[k] = v
    records = inserts.to_dict("records")
    for start in range(0, len(records), CHUNK):
        conn.execute(table.insert(), records[start : start + CHUNK])
        if progress:
            progress(min(start + CHUNK, len(records)), len(records))
    if changed.any():
        ups = merged.loc[changed, ["id", value_col]].rename(columns={"id": "_id"})
        ups["_id"] = ups["_id"].astype(int)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({value_col: bindparam(value_col)})
        )
        conn.execute(stmt, ups.to_dict("records"))
    return UpsertCounts(int(is_new.sum()), int(changed.sum()), int((~is_new & ~changed).sum()))


def store_prices(
    session: Session, tenant_id: int, prices: pd.DataFrame, progress=None
) -> UpsertCounts:  # type: ignore[no-untyped-def]
    """Store a validated price table (see ``importers.validate_prices``); sales from ``quantity``.

    Runs inside the caller's transaction: the caller commits, or nothing is stored.
    """
    ids = ensure_products(session, tenant_id, prices)
    df = prices.assign(product_id=prices["sku"].map(ids))
    pids = df["product_id"].unique().tolist()
    existing = _load_existing(session, PriceObservation, "price", tenant_id, pids)
    counts = _upsert(
        session,
        PriceObservation.__table__,
        ["product_id", "date"],
        "price",
        df[["product_id", "date", "price"]],
        existing,
        {"tenant_id": tenant_id},
        progress,
    )
    if "quantity" in df.columns:
        q = df.loc[df["quantity"].notna(), ["product_id", "date", "quantity"]]
        if len(q):
            existing_q = _load_existing(session, Sale, "quantity", tenant_id, pids)
            _upsert(
                session,
                Sale.__table__,
                ["product_id", "date"],
                "quantity",
                q,
                existing_q,
                {"tenant_id": tenant_id},
            )
    return counts


def _load_existing(session: Session, model, value: str, tenant_id: int, pids: list) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    stmt = select(model.id, model.product_id, model.date, getattr(model, value)).where(
        model.tenant_id == tenant_id
    )
    if len(pids) < 500:
        stmt = stmt.where(model.product_id.in_([int(p) for p in pids]))
    rows = session.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["id", "product_id", "date", f"{value}_old"])
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return df


def store_drivers(session: Session, tenant_id: int, drivers: pd.DataFrame) -> UpsertCounts:
    """Upsert driver observations from a frame with ``name,date,value``."""
    rows = session.execute(
        select(
            DriverObservation.id,
            DriverObservation.name,
            DriverObservation.date,
            DriverObservation.value,
        ).where(DriverObservation.tenant_id == tenant_id)
    ).all()
    existing = pd.DataFrame(rows, columns=["id", "name", "date", "value_old"])
    existing["date"] = pd.to_datetime(existing["date"]).dt.date
    return _upsert(
        session,
        DriverObservation.__table__,
        ["name", "date"],
        "value",
        drivers[["name", "date", "value"]],
        existing,
        {"tenant_id": tenant_id},
    )


def record_import(
    session: Session,
    tenant_id: int,
    source: str,
    counts: UpsertCounts | None,
    error: str | None = None,
) -> ImportRun:
    run = ImportRun(
        tenant_id=tenant_id,
        source=source[:500],
        rows_added=counts.added if counts else 0,
        rows_updated=counts.updated if counts else 0,
        rows_unchanged=counts.unchanged if counts else 0,
        status="error" if error else "ok",
        error=error,
    )
    session.add(run)
    session.flush()
    return run


def _read(session: Session, stmt) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return pd.read_sql(stmt, session.connection())


def load_prices(session: Session, tenant_id: int, since: dt.date | None = None) -> pd.DataFrame:
    """All prices of a tenant as ``sku, date (datetime64), price``, sorted."""
    stmt = (
        select(Product.sku, PriceObservation.date, PriceObservation.price)
        .join(Product, Product.id == PriceObservation.product_id)
        .where(PriceObservation.tenant_id == tenant_id)
    )
    if since is not None:
        stmt = stmt.where(PriceObservation.date >= since)
    df = _read(session, stmt)
    df["date"] = pd.to_datetime(df["date"])
    return df.sort_values(["sku", "date"], ignore_index=True)


def load_sales(session: Session, tenant_id: int, since: dt.date | None = None) -> pd.DataFrame:
    stmt = (
        select(Product.sku, Sale.date, Sale.quantity)
        .join(Product, Product.id == Sale.product_id)
        .where(Sale.tenant_id == tenant_id)
    )
    if since is not None:
        stmt = stmt.where(Sale.date >= since)
    df = _read(session, stmt)
    df["date"] = pd.to_datetime(df["date"])
    return df.sort_values(["sku", "date"], ignore_index=True)


def load_drivers(session: Session, tenant_id: int, since: dt.date | None = None) -> pd.DataFrame:
    stmt = select(DriverObservation.name, DriverObservation.date, DriverObservation.value).where(
        DriverObservation.tenant_id == tenant_id
    )
    if since is not None:
        stmt = stmt.where(DriverObservation.date >= since)
    df = _read(session, stmt)
    df["date"] = pd.to_datetime(df["date"])
    return df.sort_values(["name", "date"], ignore_index=True)


def price_range(session: Session, tenant_id: int) -> tuple[dt.date | None, dt.date | None, int]:
    """First and last price date and number of observations."""
    from sqlalchemy import func

    row = session.execute(
        select(
            func.min(PriceObservation.date),
            func.max(PriceObservation.date),
            func.count(PriceObservation.id),
        ).where(PriceObservation.tenant_id == tenant_id)
    ).one()
    return row[0], row[1], int(row[2])
