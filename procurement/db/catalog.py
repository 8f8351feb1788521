"""Companies, suppliers, products and stock. Every query is scoped to one tenant."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from procurement.db.models import Product, Stock, Supplier, Tenant
from procurement.workdays import DEFAULT_TEXT as DEFAULT_WORKING_DAYS


def get_tenant(session: Session, slug: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.slug == slug))


def get_tenant_by_id(session: Session, tenant_id: int) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise ValueError(f"no company with id {tenant_id}")
    return tenant


def get_or_create_tenant(session: Session, slug: str, name: str | None = None) -> Tenant:
    """The company ``slug``, created if absent. A new short name must be lowercase letters,
    digits and inner dashes (it names the company's model folder and appears in URLs)."""
    tenant = get_tenant(session, slug)
    if tenant is None:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", slug or ""):
            raise ValueError(
                f"invalid company short name {slug!r}: lowercase letters, digits and dashes only"
            )
        tenant = Tenant(slug=slug, name=name or slug.replace("-", " ").title())
        session.add(tenant)
        session.flush()
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.slug)))


def ensure_products(
    session: Session,
    tenant_id: int,
    catalog: pd.DataFrame,
    changed: list[tuple[int, str, str | None, str]] | None = None,
) -> dict[str, int]:
    """Create missing suppliers and products from a frame with ``sku`` (and optional name,
    supplier, currency, category, unit, and the supplier's ``working_days`` in canonical form);
    update their descriptive fields, appending each change of a stored product to ``changed``
    as (product id, field, old, new), the supplier by name. Returns sku -> id."""
    cols = [c for c in ("name", "supplier", "currency", "category", "unit") if c in catalog.columns]
    first = catalog.drop_duplicates("sku", keep="last")[["sku", *cols]]

    supplier_ids: dict[str, int] = dict(
        session.execute(
            select(Supplier.name, Supplier.id).where(Supplier.tenant_id == tenant_id)
        ).all()
    )
    if "supplier" in first.columns:
        new = sorted({s for s in first["supplier"] if s and s not in supplier_ids})
        for name in new:
            sup = Supplier(tenant_id=tenant_id, name=name)
            session.add(sup)
            session.flush()
            supplier_ids[name] = sup.id
    if {"supplier", "working_days"} <= set(catalog.columns):
        days = catalog[["supplier", "working_days"]].drop_duplicates("supplier", keep="last")
        for name, text in days.itertuples(index=False):
            if name and text:
                set_working_days(session, tenant_id, name, text)

    existing = {
        p.sku: p for p in session.scalars(select(Product).where(Product.tenant_id == tenant_id))
    }
    supplier_names = {i: n for n, i in supplier_ids.items()}
    new_rows = []
    for row in first.itertuples(index=False):
        values = {c: getattr(row, c) for c in cols if getattr(row, c)}
        if "supplier" in values:
            values["supplier_id"] = supplier_ids[values.pop("supplier")]
        prod = existing.get(row.sku)
        if prod is None:
            new_rows.append({"tenant_id": tenant_id, "sku": row.sku, **values})
        else:
            for k, v in values.items():
                if getattr(prod, k) != v:
                    if changed is not None:
                        changed.append(_described(prod, k, v, supplier_names))
                    setattr(prod, k, v)
    if new_rows:
        session.execute(insert(Product), new_rows)
    session.flush()
    return dict(
        session.execute(select(Product.sku, Product.id).where(Product.tenant_id == tenant_id)).all()
    )


def _described(
    prod: Product, field: str, new: Any, supplier_names: Mapping[int, str]
) -> tuple[int, str, str | None, str]:
    """A stored product's descriptive field as an import changes it: (id, field, old, new)."""
    if field != "supplier_id":
        old = getattr(prod, field)
        return prod.id, field, None if old is None else str(old), str(new)
    old_name = supplier_names.get(prod.supplier_id) if prod.supplier_id is not None else None
    return prod.id, "supplier", old_name, supplier_names[new]


def store_stock(session: Session, tenant_id: int, stock: pd.DataFrame) -> int:
    """Upsert on-hand stock and lead time per sku; unknown skus are an error."""
    ids = dict(
        session.execute(select(Product.sku, Product.id).where(Product.tenant_id == tenant_id)).all()
    )
    unknown = sorted(set(stock["sku"]) - set(ids))
    if unknown:
        raise ValueError(f"stock for unknown sku(s): {', '.join(unknown[:5])}")
    current = {
        s.product_id: s for s in session.scalars(select(Stock).where(Stock.tenant_id == tenant_id))
    }
    for row in stock.itertuples(index=False):
        pid = ids[row.sku]
        st = current.get(pid)
        if st is None:
            session.add(
                Stock(
                    tenant_id=tenant_id,
                    product_id=pid,
                    on_hand=float(row.on_hand),
                    lead_time_days=int(row.lead_time_days),
                )
            )
        else:
            st.on_hand = float(row.on_hand)
            st.lead_time_days = int(row.lead_time_days)
    session.flush()
    return len(stock)


def count_products(session: Session, tenant_id: int) -> int:
    return int(
        session.scalar(select(func.count(Product.id)).where(Product.tenant_id == tenant_id)) or 0
    )


def load_products(
    session: Session, tenant_id: int, skus: Sequence[str] | None = None
) -> pd.DataFrame:
    """The catalog with supplier name and working days (Mon-Fri without a supplier), stock on
    hand and lead time, one row per sku (``skus``: only those)."""
    stmt = (
        select(
            Product.sku,
            Product.name,
            Product.category,
            Product.unit,
            Product.currency,
            Supplier.name.label("supplier"),
            Stock.on_hand,
            Stock.lead_time_days,
            Supplier.working_days,
        )
        .outerjoin(Supplier, Supplier.id == Product.supplier_id)
        .outerjoin(Stock, Stock.product_id == Product.id)
        .where(Product.tenant_id == tenant_id)
        .order_by(Product.sku)
    )
    if skus is not None:
        stmt = stmt.where(Product.sku.in_(skus))
    rows = session.execute(stmt).all()
    cols = ["sku", "name", "category", "unit", "currency", "supplier", "on_hand", "lead_time_days"]
    out = pd.DataFrame(rows, columns=[*cols, "working_days"])
    out["working_days"] = out["working_days"].fillna(DEFAULT_WORKING_DAYS)
    return out


def working_days_of(session: Session, tenant_id: int, sku: str) -> str:
    """The working days of the supplier of product ``sku`` (Mon-Fri without one)."""
    days = session.scalar(
        select(Supplier.working_days)
        .join(Product, Product.supplier_id == Supplier.id)
        .where(Product.tenant_id == tenant_id, Product.sku == sku)
    )
    return days or DEFAULT_WORKING_DAYS


def list_suppliers(session: Session, tenant_id: int) -> pd.DataFrame:
    """The company's suppliers: ``supplier, working_days, products``, by name."""
    stmt = (
        select(Supplier.name, Supplier.working_days, func.count(Product.id))
        .outerjoin(Product, Product.supplier_id == Supplier.id)
        .where(Supplier.tenant_id == tenant_id)
        .group_by(Supplier.id, Supplier.name, Supplier.working_days)
        .order_by(Supplier.name)
    )
    return pd.DataFrame(
        session.execute(stmt).all(), columns=["supplier", "working_days", "products"]
    )


def set_working_days(session: Session, tenant_id: int, supplier: str, text: str) -> None:
    """Store supplier ``supplier``'s working days (canonical text, see procurement.workdays);
    ``LookupError`` if the company has no such supplier."""
    sup = session.scalar(
        select(Supplier).where(Supplier.tenant_id == tenant_id, Supplier.name == supplier)
    )
    if sup is None:
        raise LookupError(f"no supplier {supplier!r}")
    sup.working_days = text
