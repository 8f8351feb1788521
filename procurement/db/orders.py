"""Supplier terms and purchase orders: queries scoped to one company."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from procurement.db.models import (
    Product,
    PurchaseOrder,
    PurchaseOrderEvent,
    PurchaseOrderLine,
    Stock,
    Supplier,
    SupplierTerms,
)


class NoSuchOrder(LookupError, ValueError):
    """No such order (or line) in this company."""


OPEN = ("approved", "sent")  # ordered, not yet received: counts as stock on order
TERMS_COLUMNS = [
    "sku",
    "supplier",
    "pack_size",
    "min_qty",
    "min_value",
    "lead_time_days",
    "service_level",
]


def supplier_ids(session: Session, tenant_id: int) -> dict[str, int]:
    return dict(
        session.execute(
            select(Supplier.name, Supplier.id).where(Supplier.tenant_id == tenant_id)
        ).all()
    )


def product_ids(session: Session, tenant_id: int) -> dict[str, int]:
    return dict(
        session.execute(select(Product.sku, Product.id).where(Product.tenant_id == tenant_id)).all()
    )


def load_terms(session: Session, tenant_id: int) -> pd.DataFrame:
    """Terms per product and supplier: ``TERMS_COLUMNS`` (lead time and service level may be
    missing: the stock's lead time and the settings' service level apply)."""
    rows = session.execute(
        select(
            Product.sku,
            Supplier.name,
            SupplierTerms.pack_size,
            SupplierTerms.min_qty,
            SupplierTerms.min_value,
            SupplierTerms.lead_time_days,
            SupplierTerms.service_level,
        )
        .join(Product, Product.id == SupplierTerms.product_id)
        .join(Supplier, Supplier.id == SupplierTerms.supplier_id)
        .where(SupplierTerms.tenant_id == tenant_id)
        .order_by(Product.sku, Supplier.name)
    ).all()
    return pd.DataFrame(rows, columns=TERMS_COLUMNS)


def store_terms(session: Session, tenant_id: int, terms: pd.DataFrame) -> int:
    """Insert or update terms from a validated frame (``TERMS_COLUMNS``; skus known, suppliers
    created when new). Returns the number of rows written."""
    sups = supplier_ids(session, tenant_id)
    for name in sorted(set(terms["supplier"]) - set(sups)):
        sup = Supplier(tenant_id=tenant_id, name=name)
        session.add(sup)
        session.flush()
        sups[name] = sup.id
    pids = product_ids(session, tenant_id)
    current = {
        (t.supplier_id, t.product_id): t
        for t in session.scalars(select(SupplierTerms).where(SupplierTerms.tenant_id == tenant_id))
    }
    for row in terms.itertuples(index=False):
        key = (sups[row.supplier], pids[row.sku])
        values = {
            "pack_size": float(row.pack_size),
            "min_qty": float(row.min_qty),
            "min_value": float(row.min_value),
            "lead_time_days": None if pd.isna(row.lead_time_days) else int(row.lead_time_days),
            "service_level": None if pd.isna(row.service_level) else float(row.service_level),
        }
        t = current.get(key)
        if t is None:
            session.add(
                SupplierTerms(tenant_id=tenant_id, supplier_id=key[0], product_id=key[1], **values)
            )
        else:
            for k, v in values.items():
                setattr(t, k, v)
    session.flush()
    return len(terms)


def on_order(session: Session, tenant_id: int) -> pd.Series:
    """Quantity per sku on approved or sent orders (ordered, not yet received)."""
    rows = session.execute(
        select(Product.sku, func.sum(PurchaseOrderLine.quantity))
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.order_id)
        .join(Product, Product.id == PurchaseOrderLine.product_id)
        .where(PurchaseOrder.tenant_id == tenant_id, PurchaseOrder.status.in_(OPEN))
        .group_by(Product.sku)
    ).all()
    return pd.Series({sku: float(q) for sku, q in rows}, dtype=float)


def kept_draft_skus(session: Session, tenant_id: int) -> set[str]:
    """Products on drafts a person edited: a refresh leaves those drafts alone."""
    return set(
        session.scalars(
            select(Product.sku)
            .join(PurchaseOrderLine, PurchaseOrderLine.product_id == Product.id)
            .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.order_id)
            .where(
                PurchaseOrder.tenant_id == tenant_id,
                PurchaseOrder.status == "draft",
                PurchaseOrder.edited_by.is_not(None),
            )
        )
    )


def replace_drafts(
    session: Session, tenant_id: int, lines: pd.DataFrame, actor: str
) -> list[PurchaseOrder]:
    """Delete the company's drafts nobody edited and store ``lines`` (sku, supplier,
    order_date, delivery_date, quantity, unit_price, currency, reason) as one draft per supplier
    and order date. Approved, sent, received, cancelled and edited orders are not touched."""
    stale = select(PurchaseOrder.id).where(
        PurchaseOrder.tenant_id == tenant_id,
        PurchaseOrder.status == "draft",
        PurchaseOrder.edited_by.is_(None),
    )
    ids = list(session.scalars(stale))
    if ids:
        session.execute(delete(PurchaseOrderEvent).where(PurchaseOrderEvent.order_id.in_(ids)))
        session.execute(delete(PurchaseOrderLine).where(PurchaseOrderLine.order_id.in_(ids)))
        session.execute(delete(PurchaseOrder).where(PurchaseOrder.id.in_(ids)))
    if lines.empty:
        return []
    sups = supplier_ids(session, tenant_id)
    pids = product_ids(session, tenant_id)
    orders = []
    keys = lines.assign(supplier=lines["supplier"].fillna(""))
    for (supplier, day), group in keys.groupby(["supplier", "order_date"], sort=True):
        order = PurchaseOrder(
            tenant_id=tenant_id,
            supplier_id=sups.get(str(supplier)),
            order_date=pd.Timestamp(day).date(),
            status="draft",
            currency=str(group["currency"].iloc[0] or "USD")[:3],
            created_by=actor[:100],
        )
        for row in group.itertuples(index=False):
            order.lines.append(
                PurchaseOrderLine(
                    product_id=pids[row.sku],
                    quantity=float(row.quantity),
                    unit_price=float(row.unit_price),
                    delivery_date=pd.Timestamp(row.delivery_date).date(),
                    reason=str(row.reason)[:500],
                )
            )
        order.events.append(PurchaseOrderEvent(status="draft", actor=actor[:100], note="proposed"))
        session.add(order)
        orders.append(order)
    session.flush()
    return orders


def get_order(session: Session, tenant_id: int, order_id: int) -> PurchaseOrder:
    order = session.scalar(
        select(PurchaseOrder)
        .options(selectinload(PurchaseOrder.lines), selectinload(PurchaseOrder.events))
        .where(PurchaseOrder.id == order_id, PurchaseOrder.tenant_id == tenant_id)
    )
    if order is None:
        raise NoSuchOrder(f"no order {order_id} in this company")
    return order


def list_orders(
    session: Session,
    tenant_id: int,
    statuses: list[str] | None = None,
    supplier: str | None = None,
) -> pd.DataFrame:
    """One row per order: id, supplier, order_date, status, lines, total, currency, created_by,
    edited_by, newest first by order date."""
    total = func.sum(PurchaseOrderLine.quantity * PurchaseOrderLine.unit_price)
    stmt = (
        select(
            PurchaseOrder.id,
            Supplier.name,
            PurchaseOrder.order_date,
            PurchaseOrder.status,
            func.count(PurchaseOrderLine.id),
            total,
            PurchaseOrder.currency,
            PurchaseOrder.created_by,
            PurchaseOrder.edited_by,
        )
        .outerjoin(Supplier, Supplier.id == PurchaseOrder.supplier_id)
        .outerjoin(PurchaseOrderLine, PurchaseOrderLine.order_id == PurchaseOrder.id)
        .where(PurchaseOrder.tenant_id == tenant_id)
        .group_by(
            PurchaseOrder.id,
            Supplier.name,
            PurchaseOrder.order_date,
            PurchaseOrder.status,
            PurchaseOrder.currency,
            PurchaseOrder.created_by,
            PurchaseOrder.edited_by,
        )
        .order_by(PurchaseOrder.order_date, Supplier.name, PurchaseOrder.id)
    )
    if statuses:
        stmt = stmt.where(PurchaseOrder.status.in_(statuses))
    if supplier:
        stmt = stmt.where(Supplier.name == supplier)
    cols = [
        "id",
        "supplier",
        "order_date",
        "status",
        "lines",
        "total",
        "currency",
        "created_by",
        "edited_by",
    ]
    df = pd.DataFrame(session.execute(stmt).all(), columns=cols)
    df["total"] = df["total"].astype(float).fillna(0.0).round(2)
    return df


def order_lines(session: Session, order: PurchaseOrder) -> pd.DataFrame:
    """Lines of an order: line_id, sku, name, unit, quantity, unit_price, amount,
    delivery_date, reason."""
    rows = session.execute(
        select(
            PurchaseOrderLine.id,
            Product.sku,
            Product.name,
            Product.unit,
            PurchaseOrderLine.quantity,
            PurchaseOrderLine.unit_price,
            PurchaseOrderLine.delivery_date,
            PurchaseOrderLine.reason,
        )
        .join(Product, Product.id == PurchaseOrderLine.product_id)
        .where(PurchaseOrderLine.order_id == order.id)
        .order_by(Product.sku)
    ).all()
    cols = ["line_id", "sku", "name", "unit", "quantity", "unit_price", "delivery_date", "reason"]
    df = pd.DataFrame(rows, columns=cols)
    df.insert(6, "amount", (df["quantity"].astype(float) * df["unit_price"].astype(float)).round(2))
    return df


def order_total(order: PurchaseOrder) -> float:
    return round(sum(line.quantity * line.unit_price for line in order.lines), 2)


def supplier_name(session: Session, order: PurchaseOrder) -> str:
    if order.supplier_id is None:
        return "(no supplier)"
    supplier = session.get(Supplier, order.supplier_id)
    return supplier.name if supplier is not None else ""


def order_events(order: PurchaseOrder) -> pd.DataFrame:
    return pd.DataFrame(
        [(e.status, e.actor, e.at, e.note) for e in order.events],
        columns=["status", "by", "at", "note"],
    )


def add_event(order: PurchaseOrder, status: str, actor: str, note: str = "") -> None:
    order.status = status
    order.events.append(
        PurchaseOrderEvent(
            status=status,
            actor=actor[:100],
            note=note[:500],
            at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        )
    )


def receive_stock(session: Session, tenant_id: int, order: PurchaseOrder) -> None:
    """Add an order's quantities to stock on hand (a product without a stock row gets one)."""
    stock = {
        s.product_id: s for s in session.scalars(select(Stock).where(Stock.tenant_id == tenant_id))
    }
    for line in order.lines:
        row = stock.get(line.product_id)
        if row is None:
            row = Stock(tenant_id=tenant_id, product_id=line.product_id, on_hand=0.0)
            session.add(row)
            stock[line.product_id] = row
        row.on_hand = float(row.on_hand or 0.0) + float(line.quantity)
    session.flush()
