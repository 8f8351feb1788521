"""Typed ORM models. Every table that holds a company's data carries ``tenant_id``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Tenant(Base):
    __tablename__ = "tenant"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class Supplier(Base):
    __tablename__ = "supplier"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # the weekdays it takes orders on, as procurement.workdays writes them (Mon-Fri, Tue,Thu)
    working_days: Mapped[str] = mapped_column(
        String(30), default="Mon-Fri", server_default="Mon-Fri"
    )


class Product(Base):
    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("tenant_id", "sku"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300), default="")
    unit: Mapped[str] = mapped_column(String(30), default="unit")
    category: Mapped[str] = mapped_column(String(100), default="general")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("supplier.id"), nullable=True)

    supplier: Mapped[Supplier | None] = relationship()


class PriceObservation(Base):
    __tablename__ = "price_observation"
    __table_args__ = (
        UniqueConstraint("product_id", "date"),
        Index("ix_price_tenant_date", "tenant_id", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    price: Mapped[float] = mapped_column(Double)
    currency: Mapped[str] = mapped_column(String(3), default="USD")


class Sale(Base):
    __tablename__ = "sale"
    __table_args__ = (
        UniqueConstraint("product_id", "date"),
        Index("ix_sale_tenant_date", "tenant_id", "date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    quantity: Mapped[float] = mapped_column(Double)


class Stock(Base):
    __tablename__ = "stock"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), unique=True
    )
    on_hand: Mapped[float] = mapped_column(Double, default=0.0)
    lead_time_days: Mapped[int] = mapped_column(Integer, default=7)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class DriverObservation(Base):
    """An external driver of prices: an exchange rate (``fx``) or a category's commodity index
    (``index:<category>``)."""

    __tablename__ = "driver_observation"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    date: Mapped[dt.date] = mapped_column(Date)
    value: Mapped[float] = mapped_column(Double)


class ModelRun(Base):
    """A training run; also the retrain queue (status queued -> running -> done/failed/rejected)."""

    __tablename__ = "model_run"
    # At most one queued run per company: the unique slot is 'queued' while waiting, NULL after.
    __table_args__ = (UniqueConstraint("tenant_id", "queue_slot", name="uq_model_run_queue_slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    requested_by: Mapped[str] = mapped_column(String(100), default="system")
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    data_start: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    data_end: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    n_products: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    model_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    queue_slot: Mapped[str | None] = mapped_column(String(10), nullable=True)


class JobLock(Base):
    """A lease: one holder at a time, until it is released or expires (a crashed holder)."""

    __tablename__ = "job_lock"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class PriceForecast(Base):
    """Forecasts of the current model, refreshed by the scheduler so pages need not predict."""

    __tablename__ = "price_forecast"
    __table_args__ = (
        UniqueConstraint("tenant_id", "version", "sku", "date"),
        Index("ix_forecast_tenant_version", "tenant_id", "version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(100))
    date: Mapped[dt.date] = mapped_column(Date)
    y_pred: Mapped[float] = mapped_column(Double)
    lo_80: Mapped[float] = mapped_column(Double)
    hi_80: Mapped[float] = mapped_column(Double)
    lo_95: Mapped[float] = mapped_column(Double)
    hi_95: Mapped[float] = mapped_column(Double)
    p_cheaper: Mapped[float] = mapped_column(Double)
    expected_saving: Mapped[float] = mapped_column(Double)
    p_not_dearer: Mapped[float | None] = mapped_column(Double, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class AppUser(Base):
    """A person who logs in. ``tenant_id`` is None only for administrators (all companies)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), nullable=True
    )
    active: Mapped[bool] = mapped_column(default=True)
    is_demo: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)


class LoginEvent(Base):
    __tablename__ = "login_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    success: Mapped[bool] = mapped_column()
    reason: Mapped[str] = mapped_column(String(100), default="")


class DataSource(Base):
    """A configured supplier API or set of web pages that the scheduler fetches daily."""

    __tablename__ = "data_source"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))  # api | web
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ImportRun(Base):
    __tablename__ = "import_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(30), default="prices")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, server_default=func.now())
    rows_added: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(20), default="ok")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ForecastArchive(Base):
    """Every model version's stored forecasts, kept after the pages' copy is replaced, so they can
    be compared with the prices that arrive later (concept drift, live error)."""

    __tablename__ = "forecast_archive"
    __table_args__ = (UniqueConstraint("tenant_id", "version", "sku", "date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(100))
    date: Mapped[dt.date] = mapped_column(Date, index=True)
    y_pred: Mapped[float] = mapped_column(Double)
    lo_80: Mapped[float] = mapped_column(Double)
    hi_80: Mapped[float] = mapped_column(Double)


class DriftCheck(Base):
    """One drift check of a company's current model: data drift (largest feature PSI) and concept
    drift (live error over the backtest's)."""

    __tablename__ = "drift_check"
    __table_args__ = (Index("ix_drift_check_tenant_at", "tenant_id", "computed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    data_drift: Mapped[float | None] = mapped_column(Double, nullable=True)
    live_mase: Mapped[float | None] = mapped_column(Double, nullable=True)
    backtest_mase: Mapped[float | None] = mapped_column(Double, nullable=True)
    concept_drift: Mapped[float | None] = mapped_column(Double, nullable=True)
    live_coverage_80: Mapped[float | None] = mapped_column(Double, nullable=True)
    n_actuals: Mapped[int] = mapped_column(Integer, default=0)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # feature: PSI


class DriftRetrain(Base):
    """A retrain queued because of drift: at most one per company and model version."""

    __tablename__ = "drift_retrain"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    reason: Mapped[str] = mapped_column(String(300))


class AppLatency(Base):
    """The app's latency as cumulative histogram buckets (``le``: upper bound, ``+Inf``, and
    ``sum``/``count``), written by the app, exported by the sidecar."""

    __tablename__ = "app_latency"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    le: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[float] = mapped_column(Double, default=0.0)


class SupplierTerms(Base):
    """What a supplier asks for one product: pack size, minimum quantity and order value, lead
    time, and the service level the company wants for it (None: the settings' defaults)."""

    __tablename__ = "supplier_terms"
    __table_args__ = (UniqueConstraint("supplier_id", "product_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"), index=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("supplier.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    pack_size: Mapped[float] = mapped_column(Double, default=1.0)
    min_qty: Mapped[float] = mapped_column(Double, default=0.0)
    min_value: Mapped[float] = mapped_column(Double, default=0.0)
    lead_time_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    service_level: Mapped[float | None] = mapped_column(Double, nullable=True)


class PurchaseOrder(Base):
    """One order to one supplier on one day; status draft -> approved -> sent -> received, or
    cancelled. ``edited_by`` set: a person changed the draft, so a refresh keeps it."""

    __tablename__ = "purchase_order"
    __table_args__ = (Index("ix_purchase_order_tenant_status", "tenant_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    supplier_id: Mapped[int | None] = mapped_column(
        ForeignKey("supplier.id", ondelete="SET NULL"), nullable=True
    )
    order_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    edited_by: Mapped[str | None] = mapped_column(String(100), nullable=True)

    lines: Mapped[list[PurchaseOrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="PurchaseOrderLine.id"
    )
    events: Mapped[list[PurchaseOrderEvent]] = relationship(
        cascade="all, delete-orphan", order_by="PurchaseOrderEvent.id"
    )


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("purchase_order.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"))
    quantity: Mapped[float] = mapped_column(Double)
    unit_price: Mapped[float] = mapped_column(Double)
    delivery_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    reason: Mapped[str] = mapped_column(String(500), default="")

    order: Mapped[PurchaseOrder] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class PurchaseOrderEvent(Base):
    """Status history of an order: who moved it to which status, when, and why."""

    __tablename__ = "purchase_order_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("purchase_order.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
    note: Mapped[str] = mapped_column(String(500), default="")


class AssistantMessage(Base):
    """One turn of a user's conversation with the assistant, in one company: the question or
    the answer, with the tool calls made and the sources of the answer's numbers."""

    __tablename__ = "assistant_message"
    __table_args__ = (Index("ix_assistant_message_tenant_user", "tenant_id", "username", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(10))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    sources: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=_now)
