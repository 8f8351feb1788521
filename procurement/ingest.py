"""Running data sources: fetch, store in one transaction, record the run (source, rows added,
updated, rejected, errors). Used by the CLI, the app's Data page and the scheduler."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from procurement.auth import Principal, authorized_tenant
from procurement.data.connectors import (
    ApiSource,
    ConnectorError,
    WebProduct,
    WebSource,
    fetch_api,
    fetch_web,
)
from procurement.data.importers import ImportValidationError
from procurement.db import catalog, history, session
from procurement.db.models import DataSource, ImportRun

log = logging.getLogger(__name__)


def add_source(
    session_: Session, tenant_id: int, name: str, kind: str, config: dict[str, Any]
) -> DataSource:
    """Validate a source's configuration and store it."""
    if kind == "api":
        ApiSource(name=name, **config)
    elif kind == "web":
        _web(name, config)
    else:
        raise ValueError("kind must be 'api' or 'web'")
    src = DataSource(tenant_id=tenant_id, name=name, kind=kind, config=config)
    session_.add(src)
    session_.flush()
    return src


def _web(name: str, config: dict[str, Any]) -> WebSource:
    products = [WebProduct(**p) for p in config.get("products", [])]
    if not products:
        raise ValueError("a web source needs at least one product (sku, url, selector)")
    rest = {k: v for k, v in config.items() if k != "products"}
    return WebSource(name=name, products=products, **rest)


def list_sources(session_: Session, tenant_id: int) -> list[DataSource]:
    return list(
        session_.scalars(
            select(DataSource).where(DataSource.tenant_id == tenant_id).order_by(DataSource.name)
        )
    )


def list_import_runs(session_: Session, tenant_id: int, limit: int = 50) -> list[ImportRun]:
    return list(
        session_.scalars(
            select(ImportRun)
            .where(ImportRun.tenant_id == tenant_id)
            .order_by(ImportRun.id.desc())
            .limit(limit)
        )
    )


def run_source(engine: Engine, tenant: str, name: str, actor: Principal) -> ImportRun:
    """Fetch one source and store its prices; a failure stores nothing and is recorded."""
    with session(engine) as s:
        ten = authorized_tenant(s, tenant, actor, "import")
        src = s.scalar(
            select(DataSource).where(DataSource.tenant_id == ten.id, DataSource.name == name)
        )
        if src is None:
            raise ValueError(f"no data source {name!r} for {tenant!r}")
        kind, config, tenant_id = src.kind, dict(src.config), ten.id
    label = f"{kind}:{name}"
    failures: list[tuple[str, str]] = []
    try:
        if kind == "api":
            prices = fetch_api(ApiSource(name=name, **config))
        else:
            res = fetch_web(_web(name, config))
            prices, failures = res.prices, res.failures
        with session(engine) as s, s.begin():
            counts = (
                history.store_prices(s, tenant_id, prices)
                if len(prices)
                else history.UpsertCounts()
            )
            run = history.record_import(
                s,
                tenant_id,
                label,
                counts,
                error="; ".join(f"{sku}: {why}" for sku, why in failures) or None,
            )
            run.kind = kind
            run.status = "ok" if not failures else ("partial" if len(prices) else "error")
            run.rows_rejected = len(failures)
            s.get(DataSource, src.id).last_run_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            return run
    except (ConnectorError, ImportValidationError) as exc:
        log.warning("source %s failed: %s", label, exc)
        with session(engine) as s, s.begin():
            run = history.record_import(s, tenant_id, label, None, error=str(exc))
            run.kind = kind
            return run


def run_all(engine: Engine) -> int:
    """The scheduler's daily job: every active source of every company."""
    with session(engine) as s:
        todo = [
            (catalog.get_tenant_by_id(s, src.tenant_id).slug, src.name)
            for src in s.scalars(select(DataSource).where(DataSource.active.is_(True)))
        ]
    for tenant, name in todo:
        try:
            run_source(engine, tenant, name, Principal("schedule", "admin", None))
        except Exception:  # one broken source must not stop the others
            log.exception("source %s/%s crashed", tenant, name)
    return len(todo)
