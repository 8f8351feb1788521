"""Getting prices in: files and data sources are validated, checked against the company's
catalog and recent prices, stored in one transaction and recorded with who made the import, so
it can be undone. Used by the CLI, the app's Data page and the scheduler."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from procurement.auth import Principal, authorize, authorized_tenant
from procurement.config import get_settings
from procurement.data.connectors import (
    ApiSource,
    ConnectorError,
    FetchLimits,
    WebProduct,
    WebSource,
    fetch_api,
    fetch_web,
)
from procurement.data.importers import (
    LINE,
    MAX_ERRORS_REPORTED,
    FileFormat,
    ImportValidationError,
    RowError,
    read_catalog_csv,
    read_price_csv,
    read_stock_csv,
    sku_key,
)
from procurement.db import catalog, history, open_session, sources
from procurement.db.models import DataSource, ImportRun, Tenant

log = logging.getLogger(__name__)


def add_source(
    session: Session, tenant_id: int, name: str, kind: str, config: dict[str, Any]
) -> DataSource:
    """Validate a source's configuration and store it."""
    if kind == "api":
        ApiSource(name=name, **config)
    elif kind == "web":
        _web(name, config)
    else:
        raise ValueError("kind must be 'api' or 'web'")
    return sources.add_source(session, tenant_id, name, kind, config)


class NeedsConfirmation(ImportValidationError):
    """Prices that moved by more than the outlier factor against the product's recent median;
    nothing was stored. Import again confirming them to store them."""


@dataclass(frozen=True)
class ImportResult:
    run_id: int
    counts: history.UpsertCounts


RECENT_DAYS = 90
RETRIES = 3


def sku_conflicts(session: Session, tenant_id: int, prices: pd.DataFrame) -> list[RowError]:
    """Rows whose SKU differs from a stored product's only in case or accents: MySQL would
    take them for that product and SQLite for a new one, so both refuse them."""
    stored = sources.product_skus(session, tenant_id)
    exact = set(stored)
    by_key = {sku_key(s): s for s in stored}
    clashing = {u for u in pd.unique(prices["sku"]) if u not in exact and sku_key(u) in by_key}
    if not clashing:
        return []
    errors = []
    lines = _lines(prices)
    for i, sku in enumerate(prices["sku"]):
        if sku in clashing:
            errors.append(
                RowError(
                    int(lines[i]),
                    "sku",
                    f"{sku!r} differs only in case or accents from the product "
                    f"{by_key[sku_key(sku)]!r}; use that spelling",
                )
            )
            if len(errors) >= MAX_ERRORS_REPORTED:
                break
    return errors


def _lines(prices: pd.DataFrame) -> np.ndarray:
    return prices[LINE].to_numpy() if LINE in prices.columns else np.arange(2, len(prices) + 2)


def price_outliers(
    session: Session, tenant_id: int, prices: pd.DataFrame, factor: float
) -> list[RowError]:
    """Rows whose price is more than ``factor`` times above or below the product's median over
    its last ``RECENT_DAYS`` stored days (for a new product: its median in the file)."""
    ref = pd.Series(dtype=float)
    latest = history.latest_price_date(session, tenant_id)
    if latest is not None:
        recent = history.load_prices(
            session, tenant_id, since=latest - dt.timedelta(days=RECENT_DAYS)
        )
        recent = recent[recent["sku"].isin(set(prices["sku"]))]
        ref = recent.groupby("sku")["price"].median()
    median = prices["sku"].map(ref).astype(float)
    median = median.fillna(prices.groupby("sku")["price"].transform("median"))
    price = prices["price"].to_numpy(dtype=float)
    m = median.to_numpy(dtype=float)
    ratio = np.maximum(price / m, m / price)
    lines = _lines(prices)
    errors = []
    for i in np.flatnonzero(ratio > factor)[:MAX_ERRORS_REPORTED]:
        direction = "above" if price[i] > m[i] else "below"
        errors.append(
            RowError(
                int(lines[i]),
                "price",
                f"{price[i]:g} is {ratio[i]:.1f}x {direction} the recent median {m[i]:g} of "
                f"{prices['sku'].iloc[i]}; confirm to store it",
            )
        )
    return errors


def _retrying(fn: Callable[[], Any]) -> Any:
    """Run a whole transaction again when a concurrent one got in first (a product or price row
    it was about to insert now exists, or a deadlock/lock timeout); imports are idempotent, so
    the rerun sees the other's rows and updates instead of inserting."""
    for attempt in range(1, RETRIES + 1):
        try:
            return fn()
        except (IntegrityError, OperationalError) as exc:
            transient = isinstance(exc, IntegrityError) or any(
                w in str(exc.orig).lower() for w in ("deadlock", "locked", "lock wait")
            )
            if not transient or attempt == RETRIES:
                raise
            log.info("import collided with a concurrent one (%s); retrying", exc.orig)
            time.sleep(0.1 * attempt)
    raise AssertionError("unreachable")


def authorize_import(session: Session, tenant: str, actor: Principal) -> Tenant | None:
    """Raise ``PermissionDenied`` unless ``actor`` may import into ``tenant``; a company that
    does not exist yet is created by the import, which only administrators may do."""
    existing = catalog.get_tenant(session, tenant)
    authorize(actor, "import", existing.id if existing else None)
    if existing is None:
        authorize(actor, "admin")
    return existing


def _tenant_for_import(session: Session, tenant: str, actor: Principal) -> Tenant:
    existing = authorize_import(session, tenant, actor)
    return existing or catalog.get_or_create_tenant(session, tenant)


def import_prices(
    engine: Engine,
    tenant: str,
    prices: pd.DataFrame,
    source: str,
    actor: Principal,
    confirm_outliers: bool = False,
    progress: Callable[[int, int], None] | None = None,
    actor_name: str | None = None,
    rejected: int = 0,
) -> ImportResult:
    """Store a validated price table (``importers.validate_prices``) in one transaction and
    record the import with who made it (``actor_name``, else the actor's user name) so it can
    be undone. Refused, storing nothing: SKUs that differ only in case from stored ones, and,
    unless ``confirm_outliers``, prices far from the product's recent median. ``rejected``:
    rows of the file the user chose to leave out, recorded with the run."""
    factor = get_settings().outlier_factor

    def attempt() -> ImportResult:
        with open_session(engine) as s, s.begin():
            ten = _tenant_for_import(s, tenant, actor)
            errors = sku_conflicts(s, ten.id, prices)
            if errors:
                raise ImportValidationError(errors, source)
            if not confirm_outliers:
                flagged = price_outliers(s, ten.id, prices, factor)
                if flagged:
                    raise NeedsConfirmation(flagged, source)
            run = history.record_import(
                s, ten.id, source, None, actor=actor_name or actor.username, undoable=True
            )
            counts = history.store_prices(
                s, ten.id, prices, progress=progress, import_run_id=run.id
            )
            run.rows_added, run.rows_updated = counts.added, counts.updated
            run.rows_unchanged = counts.unchanged
            run.rows_rejected = rejected
            if rejected:
                run.status = "partial"
            return ImportResult(run.id, counts)

    return _retrying(attempt)


def import_price_file(
    engine: Engine,
    tenant: str,
    path: str | Path,
    actor: Principal,
    fmt: FileFormat | None = None,
    confirm_outliers: bool = False,
    progress: Callable[[int, int], None] | None = None,
    actor_name: str | None = None,
) -> ImportResult:
    """The CLI's ``import prices``: the file read in its format (see ``importers``), then
    ``import_prices``."""
    prices = read_price_csv(path, fmt=fmt)
    return import_prices(
        engine, tenant, prices, str(path), actor, confirm_outliers, progress, actor_name
    )


def undo_import(
    engine: Engine, tenant: str, run_id: int, actor: Principal, actor_name: str | None = None
) -> ImportRun:
    """Undo import ``run_id`` of ``tenant`` (see ``history.undo_import``), as ``actor``."""
    with open_session(engine) as s, s.begin():
        ten = authorized_tenant(s, tenant, actor, "import")
        return history.undo_import(s, ten.id, run_id, actor_name or actor.username)


def import_stock_file(session: Session, tenant: str, path: str | Path, actor: Principal) -> int:
    """Stock on hand and lead times per sku; unknown skus are rejected with their line."""
    ten = authorized_tenant(session, tenant, actor, "import")
    df = read_stock_csv(path)
    known = set(catalog.load_products(session, ten.id)["sku"])
    unknown = [
        RowError(i + 2, "sku", f"{sku} is not in the catalog")
        for i, sku in enumerate(df["sku"])
        if sku not in known
    ]
    if unknown:
        raise ImportValidationError(unknown[:MAX_ERRORS_REPORTED], str(path))
    n = catalog.store_stock(session, ten.id, df)
    history.record_import(session, ten.id, f"stock:{path}", history.UpsertCounts(updated=n))
    return n


def import_catalog_file(session: Session, tenant: str, path: str | Path, actor: Principal) -> int:
    """Create or update products (name, supplier, category, unit, currency) from a CSV."""
    ten = authorized_tenant(session, tenant, actor, "import")
    df = read_catalog_csv(path)
    catalog.ensure_products(session, ten.id, df)
    history.record_import(session, ten.id, f"catalog:{path}", history.UpsertCounts(updated=len(df)))
    return len(df)


def _web(name: str, config: dict[str, Any]) -> WebSource:
    products = [WebProduct(**p) for p in config.get("products", [])]
    if not products:
        raise ValueError("a web source needs at least one product (sku, url, selector)")
    rest = {k: v for k, v in config.items() if k != "products"}
    return WebSource(name=name, products=products, **rest)


def _source_prices(
    kind: str, name: str, config: dict[str, Any], limits: FetchLimits | None
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    try:
        if kind == "api":
            return fetch_api(ApiSource(name=name, **config), limits=limits), []
        res = fetch_web(_web(name, config), limits=limits)
        return res.prices, res.failures
    except ImportValidationError:
        raise
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConnectorError(f"{name}: the source's configuration is invalid ({exc})") from None


def _held_back(errors: list[RowError], prices: pd.DataFrame) -> tuple[set[int], list[tuple]]:
    """Rows of a fetched table refused by the store checks, as (sku, reason) failures."""
    lines = set()
    failures = []
    for e in errors:
        if e.line is None:
            continue
        lines.add(e.line)
        sku = prices.loc[prices[LINE] == e.line, "sku"].iloc[0]
        failures.append((sku, e.message))
    return lines, failures


def run_source(
    engine: Engine,
    tenant: str,
    name: str,
    actor: Principal,
    limits: FetchLimits | None = None,
) -> ImportRun:
    """Fetch one source and store its prices (undoable, like a file import); a failure stores
    nothing and is recorded. Prices far off the recent median and SKUs differing only in case
    from stored ones are held back and listed in the run's errors."""
    with open_session(engine) as s:
        ten = authorized_tenant(s, tenant, actor, "import")
        src = sources.get_source(s, ten.id, name)
        if src is None:
            raise ValueError(f"no data source {name!r} for {tenant!r}")
        kind, config, tenant_id, src_id = src.kind, dict(src.config), ten.id, src.id
    label = f"{kind}:{name}"
    factor = get_settings().outlier_factor
    try:
        prices, fetch_failures = _source_prices(kind, name, config, limits)
        prices = prices.assign(**{LINE: np.arange(2, len(prices) + 2)})

        def store() -> ImportRun:
            with open_session(engine) as s, s.begin():
                failures = list(fetch_failures)
                held, more = _held_back(
                    sku_conflicts(s, tenant_id, prices)
                    + price_outliers(s, tenant_id, prices, factor),
                    prices,
                )
                failures += more
                keep = prices[~prices[LINE].isin(held)]
                run = history.record_import(
                    s, tenant_id, label, None, actor=actor.username, undoable=True
                )
                counts = (
                    history.store_prices(s, tenant_id, keep, import_run_id=run.id)
                    if len(keep)
                    else history.UpsertCounts()
                )
                run.rows_added, run.rows_updated = counts.added, counts.updated
                run.rows_unchanged = counts.unchanged
                run.kind = kind
                run.status = "ok" if not failures else ("partial" if len(keep) else "error")
                run.error = "; ".join(f"{sku}: {why}" for sku, why in failures) or None
                run.rows_rejected = len(failures)
                sources.mark_fetched(s, src_id)
                return run

        return _retrying(store)
    except (ConnectorError, ImportValidationError) as exc:
        log.warning("source %s failed: %s", label, exc)
        with open_session(engine) as s, s.begin():
            run = history.record_import(
                s, tenant_id, label, None, error=str(exc), actor=actor.username
            )
            run.kind = kind
            return run


def run_all(engine: Engine, concurrency: int | None = None) -> int:
    """The scheduler's daily job: every active source of every company, ``FETCH_CONCURRENCY``
    at a time, so one slow supplier does not hold the others (each has its own deadline)."""
    with open_session(engine) as s:
        todo = sources.active_sources(s)

    def one(tenant: str, name: str) -> None:
        try:
            run_source(engine, tenant, name, Principal("schedule", "admin", None))
        except Exception:  # one broken source must not stop the others
            log.exception("source %s/%s crashed", tenant, name)

    workers = concurrency or get_settings().fetch_concurrency
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        list(pool.map(lambda t: one(*t), todo))
    return len(todo)
