"""Supplier APIs and web pages a company fetches prices from, and their import runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from procurement.db.models import DataSource, ImportRun, Product, Tenant


def add_source(
    session: Session, tenant_id: int, name: str, kind: str, config: dict[str, Any]
) -> DataSource:
    src = DataSource(tenant_id=tenant_id, name=name, kind=kind, config=config)
    session.add(src)
    session.flush()
    return src


def list_sources(session: Session, tenant_id: int) -> list[DataSource]:
    return list(
        session.scalars(
            select(DataSource).where(DataSource.tenant_id == tenant_id).order_by(DataSource.name)
        )
    )


def get_source(session: Session, tenant_id: int, name: str) -> DataSource | None:
    return session.scalar(
        select(DataSource).where(DataSource.tenant_id == tenant_id, DataSource.name == name)
    )


def active_sources(session: Session) -> list[tuple[str, str]]:
    """(company slug, source name) of every active source of every company."""
    rows = session.execute(
        select(Tenant.slug, DataSource.name)
        .join(Tenant, Tenant.id == DataSource.tenant_id)
        .where(DataSource.active.is_(True))
        .order_by(Tenant.slug, DataSource.name)
    ).all()
    return [(slug, name) for slug, name in rows]


def mark_fetched(session: Session, source_id: int) -> None:
    src = session.get(DataSource, source_id)
    if src is not None:
        src.last_run_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)


def list_import_runs(session: Session, tenant_id: int, limit: int = 50) -> list[ImportRun]:
    return list(
        session.scalars(
            select(ImportRun)
            .where(ImportRun.tenant_id == tenant_id)
            .order_by(ImportRun.id.desc())
            .limit(limit)
        )
    )


def product_skus(session: Session, tenant_id: int) -> list[str]:
    return list(session.scalars(select(Product.sku).where(Product.tenant_id == tenant_id)))
