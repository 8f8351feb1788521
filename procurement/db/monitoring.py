"""Queries for monitoring: the forecast archive, drift checks, drift-triggered retrains, the app's
latency histogram, and the counts the metrics endpoint exports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from procurement.db import rows_changed
from procurement.db.models import (
    AppLatency,
    DriftCheck,
    DriftRetrain,
    ForecastArchive,
    ImportRun,
    JobLock,
    ModelRun,
    PriceForecast,
    PriceObservation,
    Tenant,
)


def archive_forecasts(session: Session, tenant_id: int, version: str) -> int:
    """Copy the stored forecasts of ``version`` into the archive once; returns rows added."""
    done = session.scalar(
        select(func.count())
        .select_from(ForecastArchive)
        .where(ForecastArchive.tenant_id == tenant_id, ForecastArchive.version == version)
    )
    if done:
        return 0
    cols = ["tenant_id", "version", "sku", "date", "y_pred", "lo_80", "hi_80"]
    src = select(*[getattr(PriceForecast, c) for c in cols]).where(
        PriceForecast.tenant_id == tenant_id, PriceForecast.version == version
    )
    try:
        with session.begin_nested():
            res = session.execute(insert(ForecastArchive).from_select(cols, src))
    except IntegrityError:  # another process archived it at the same moment
        return 0
    return rows_changed(res)


def archived_forecasts(
    session: Session, tenant_id: int, since: dt.date | None = None, version: str | None = None
) -> pd.DataFrame:
    """Archived forecasts (of one version, or all) as ``version, sku, date, y_pred, lo_80,
    hi_80``."""
    cols = ["version", "sku", "date", "y_pred", "lo_80", "hi_80"]
    stmt = select(*[getattr(ForecastArchive, c) for c in cols]).where(
        ForecastArchive.tenant_id == tenant_id
    )
    if since is not None:
        stmt = stmt.where(ForecastArchive.date >= since)
    if version is not None:
        stmt = stmt.where(ForecastArchive.version == version)
    df = pd.DataFrame(session.execute(stmt).all(), columns=cols)
    df["date"] = pd.to_datetime(df["date"])
    return df


def add_drift_check(session: Session, tenant_id: int, version: str, **values: Any) -> DriftCheck:
    check = DriftCheck(tenant_id=tenant_id, version=version, **values)
    session.add(check)
    session.flush()
    return check


def drift_history(session: Session, tenant_id: int, limit: int = 500) -> pd.DataFrame:
    """The company's drift checks, oldest first, one row each, with one ``psi:<feature>`` column
    per feature."""
    rows = session.scalars(
        select(DriftCheck)
        .where(DriftCheck.tenant_id == tenant_id)
        .order_by(DriftCheck.computed_at.desc(), DriftCheck.id.desc())
        .limit(limit)
    ).all()
    cols = [
        "computed_at",
        "version",
        "data_drift",
        "concept_drift",
        "live_mase",
        "backtest_mase",
        "live_coverage_80",
        "n_actuals",
    ]
    df = pd.DataFrame(
        [
            {
                **{c: getattr(r, c) for c in cols},
                **{f"psi:{k}": v for k, v in (r.features or {}).items()},
            }
            for r in reversed(rows)
        ],
        columns=None if rows else cols,
    )
    return df


def latest_drift_checks(session: Session) -> list[tuple[str, DriftCheck]]:
    """The newest drift check of every company, as (company slug, check)."""
    newest = (
        select(DriftCheck.tenant_id, func.max(DriftCheck.id).label("id"))
        .group_by(DriftCheck.tenant_id)
        .subquery()
    )
    rows = session.execute(
        select(Tenant.slug, DriftCheck)
        .join(newest, newest.c.id == DriftCheck.id)
        .join(Tenant, Tenant.id == DriftCheck.tenant_id)
    ).all()
    return [(slug, check) for slug, check in rows]


def claim_drift_retrain(session: Session, tenant_id: int, version: str, reason: str) -> bool:
    """Record that drift of ``version`` asked for a retrain; False if it already did once (the
    primary key makes this hold across processes)."""
    try:
        with session.begin_nested():
            session.add(DriftRetrain(tenant_id=tenant_id, version=version, reason=reason[:300]))
    except IntegrityError:
        return False
    return True


def set_drift_retrain_run(session: Session, tenant_id: int, version: str, run_id: int) -> None:
    session.execute(
        update(DriftRetrain)
        .where(DriftRetrain.tenant_id == tenant_id, DriftRetrain.version == version)
        .values(run_id=run_id)
    )


def drift_retrains(session: Session, tenant_id: int | None = None) -> list[DriftRetrain]:
    stmt = select(DriftRetrain).order_by(DriftRetrain.requested_at)
    if tenant_id is not None:
        stmt = stmt.where(DriftRetrain.tenant_id == tenant_id)
    return list(session.scalars(stmt))


def drift_retrain_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Tenant.slug, func.count())
        .join(DriftRetrain, DriftRetrain.tenant_id == Tenant.id)
        .group_by(Tenant.slug)
    ).all()
    return {slug: int(n) for slug, n in rows}


# --- the app's latency: cumulative histogram rows --------------------------------------------


def add_latency(session: Session, counts: Mapping[tuple[str, str], float]) -> None:
    """Add ``counts`` ({(name, le): increment}) to the stored histogram rows."""
    for (name, le), inc in counts.items():
        res = session.execute(
            update(AppLatency)
            .where(AppLatency.name == name, AppLatency.le == le)
            .values(value=AppLatency.value + inc)
        )
        if rows_changed(res) == 0:
            try:
                with session.begin_nested():
                    session.add(AppLatency(name=name, le=le, value=inc))
            except IntegrityError:  # created by another process meanwhile
                session.execute(
                    update(AppLatency)
                    .where(AppLatency.name == name, AppLatency.le == le)
                    .values(value=AppLatency.value + inc)
                )


def latency(session: Session) -> dict[str, dict[str, float]]:
    """{name: {le: value}} of every stored histogram."""
    out: dict[str, dict[str, float]] = {}
    for name, le, value in session.execute(
        select(AppLatency.name, AppLatency.le, AppLatency.value)
    ):
        out.setdefault(name, {})[le] = float(value)
    return out


# --- counts for the metrics endpoint ---------------------------------------------------------


def run_counts(session: Session) -> list[tuple[str, str, int]]:
    """(company, status, runs)."""
    rows = session.execute(
        select(Tenant.slug, ModelRun.status, func.count())
        .join(Tenant, Tenant.id == ModelRun.tenant_id)
        .group_by(Tenant.slug, ModelRun.status)
    ).all()
    return [(slug, status, int(n)) for slug, status, n in rows]


def run_durations(session: Session) -> list[tuple[str, float]]:
    """(company, seconds) of every finished run that started."""
    rows = session.execute(
        select(Tenant.slug, ModelRun.started_at, ModelRun.finished_at)
        .join(Tenant, Tenant.id == ModelRun.tenant_id)
        .where(ModelRun.started_at.is_not(None), ModelRun.finished_at.is_not(None))
    ).all()
    return [(slug, max((f - s).total_seconds(), 0.0)) for slug, s, f in rows if s and f]


def queue_lengths(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Tenant.slug, func.count())
        .join(ModelRun, ModelRun.tenant_id == Tenant.id)
        .where(ModelRun.status == "queued")
        .group_by(Tenant.slug)
    ).all()
    return {slug: int(n) for slug, n in rows}


def leases(session: Session, names: Iterable[str], now: dt.datetime) -> dict[str, bool]:
    held = {
        lock.name: lock.expires_at > now
        for lock in session.scalars(select(JobLock).where(JobLock.name.in_(list(names))))
    }
    return {n: held.get(n, False) for n in names}


def newest_prices(session: Session) -> dict[str, dt.date]:
    rows = session.execute(
        select(Tenant.slug, func.max(PriceObservation.date))
        .join(PriceObservation, PriceObservation.tenant_id == Tenant.id)
        .group_by(Tenant.slug)
    ).all()
    return {slug: d for slug, d in rows if d is not None}


def ingestion(session: Session) -> list[dict[str, Any]]:
    """Per company, kind, source label and status: runs and rows stored and rejected."""
    rows = session.execute(
        select(
            Tenant.slug,
            ImportRun.kind,
            ImportRun.source,
            ImportRun.status,
            func.count(),
            func.coalesce(func.sum(ImportRun.rows_added + ImportRun.rows_updated), 0),
            func.coalesce(func.sum(ImportRun.rows_rejected), 0),
        )
        .join(Tenant, Tenant.id == ImportRun.tenant_id)
        .group_by(Tenant.slug, ImportRun.kind, ImportRun.source, ImportRun.status)
    ).all()
    return [
        {
            "company": slug,
            "kind": kind,
            "source": source,
            "status": status,
            "runs": int(n),
            "rows": int(stored),
            "rejected": int(rejected),
        }
        for slug, kind, source, status, n, stored, rejected in rows
    ]


def tenants(session: Session) -> list[tuple[int, str]]:
    return [(t.id, t.slug) for t in session.scalars(select(Tenant).order_by(Tenant.slug))]
