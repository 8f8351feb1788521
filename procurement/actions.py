"""One door per thing a user does.

Every page, CLI command, scheduler job, connector and assistant tool calls these functions, so
the CLI and a page cannot disagree and a page that forgets a check cannot open a hole. Each takes
the acting ``Principal`` and a keyword-only ``session``, checks role and company itself before it
looks at anything else, and returns data or raises an ordinary exception (``PermissionDenied``,
``ValueError``, ``LookupError``, ``ImportValidationError``) whose message the caller shows.

Reads run in the caller's session. Writes that must be retried on a deadlock or take a lease
(imports, fetches, retrain requests) open their own short transactions on the session's engine;
the others write in the caller's transaction, which the caller commits.

The order actions live in ``procurement.orders`` and are part of this layer; they are listed in
``__all__`` below so the one door is one module.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from procurement import auth, buying, ingest, monitoring, retrain, workdays
from procurement.auth import Principal, authorize, authorized_tenant
from procurement.config import Settings, get_settings
from procurement.data.importers import FileFormat
from procurement.db import catalog as catalog_db
from procurement.db import forecasts, history, runs, sources
from procurement.db import monitoring as monitoring_db
from procurement.db.models import AppUser, DataSource, DriftRetrain, ImportRun, ModelRun, Tenant
from procurement.db.runs import TrainingBusy
from procurement.forecast import store
from procurement.forecast.model import PriceModel, min_history
from procurement.orders import (
    approve,
    edit_line,
    export_csv,
    export_pdf,
    get_order,
    import_terms,
    list_orders,
    mark_sent,
    propose_orders,
    receive,
    reject,
    set_order_date,
    terms_table,
)
from procurement.recommend import Policy

__all__ = [
    "add_source",
    "add_user",
    "advice",
    "approve",
    "catalog",
    "check_drift",
    "companies",
    "create_company",
    "current_model",
    "current_version",
    "data_sources",
    "data_status",
    "drift_history",
    "driver_effects",
    "edit_line",
    "export_csv",
    "export_pdf",
    "fetch_source",
    "forecast",
    "get_order",
    "import_catalog_file",
    "import_log",
    "import_price_file",
    "import_prices",
    "import_stock_file",
    "import_terms",
    "list_orders",
    "mark_sent",
    "model_versions",
    "price_history",
    "product_advice",
    "propose_orders",
    "receive",
    "reject",
    "request_retrain",
    "rollback",
    "scheduler_running",
    "set_active",
    "set_order_date",
    "set_password",
    "set_role",
    "set_working_days",
    "suppliers",
    "terms_table",
    "train_now",
    "train_queued",
    "training_runs",
    "undo_import",
    "users",
]

Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)


def _engine(session: Session) -> Engine:
    return cast(Engine, session.get_bind())


# -- who and where ---------------------------------------------------------------------------


def companies(actor: Principal, *, session: Session) -> list[Tenant]:
    """The companies ``actor`` may open: their own, or all for an administrator of all."""
    authorize(actor, "view")
    return auth.visible_tenants(session, actor)


def data_status(actor: Principal, *, session: Session, tenant: str) -> dict[str, Any]:
    """First and newest price date and the number of products of the company."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return history.freshness(session, ten.id)


# -- data in ---------------------------------------------------------------------------------


def import_prices(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    prices: pd.DataFrame,
    source: str,
    confirm_outliers: bool = False,
    rejected: int = 0,
    progress: Progress | None = None,
    actor_name: str | None = None,
) -> ingest.ImportResult:
    """Store a validated price table (``importers.validate_prices``) as one undoable import,
    and move the stored forecasts to the new prices. ``rejected``: rows the user chose to leave
    out of the file, recorded with the run."""
    return _refreshed(
        session,
        tenant,
        ingest.import_prices(
            _engine(session),
            tenant,
            prices,
            source,
            actor,
            confirm_outliers=confirm_outliers,
            progress=progress,
            actor_name=actor_name,
            rejected=rejected,
        ),
    )


R = TypeVar("R")


def _refreshed(session: Session, tenant: str, result: R) -> R:
    """After new prices: today's forecasts and advice start from them at once (the retrain
    stays on its schedule). A company without a model yet has nothing to refresh."""
    settings = get_settings()
    if store.current_version(settings.model_dir, tenant) is not None:
        try:
            retrain.refresh_forecasts(_engine(session), settings, tenant)
        except Exception:  # the prices are stored; stale forecasts are refreshed daily anyway
            log.warning(
                "could not refresh the forecasts of %s after new prices", tenant, exc_info=True
            )
    return result


def import_price_file(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    path: str | Path,
    fmt: FileFormat | None = None,
    confirm_outliers: bool = False,
    progress: Progress | None = None,
    actor_name: str | None = None,
) -> ingest.ImportResult:
    """Read a price file in its format (or ``fmt``) and store it as one undoable import."""
    ingest.authorize_import(session, tenant, actor)
    return _refreshed(
        session,
        tenant,
        ingest.import_price_file(
            _engine(session),
            tenant,
            path,
            actor,
            fmt,
            confirm_outliers=confirm_outliers,
            progress=progress,
            actor_name=actor_name,
        ),
    )


def import_stock_file(actor: Principal, *, session: Session, tenant: str, path: str | Path) -> int:
    """Stock on hand and lead times per sku, in the caller's transaction."""
    return ingest.import_stock_file(session, tenant, path, actor)


def import_catalog_file(
    actor: Principal, *, session: Session, tenant: str, path: str | Path
) -> int:
    """Create or update products from a catalog file, in the caller's transaction."""
    return ingest.import_catalog_file(session, tenant, path, actor)


def suppliers(actor: Principal, *, session: Session, tenant: str) -> pd.DataFrame:
    """The company's suppliers with their working days and how many products each supplies."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return catalog_db.list_suppliers(session, ten.id)


def set_working_days(
    actor: Principal, *, session: Session, tenant: str, supplier: str, working_days: str
) -> str:
    """Set the weekdays supplier ``supplier`` takes orders on (``Mon-Fri``, ``Mon,Tue,Sat``;
    see ``procurement.workdays``); buy days of its products fall on them from the next advice
    on. Returns the stored, canonical text; ``ValueError`` for a value that is not a calendar,
    ``LookupError`` for an unknown supplier."""
    ten = authorized_tenant(session, tenant, actor, "import")
    text = workdays.normalized(working_days)
    catalog_db.set_working_days(session, ten.id, supplier, text)
    log.info("working days of %s in %s set to %s by %s", supplier, tenant, text, actor.username)
    return text


def undo_import(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    run_id: int,
    actor_name: str | None = None,
) -> ImportRun:
    """Undo one import: restore the values it overwrote and remove the rows it added."""
    return _refreshed(
        session, tenant, ingest.undo_import(_engine(session), tenant, run_id, actor, actor_name)
    )


def import_log(actor: Principal, *, session: Session, tenant: str, limit: int = 50) -> pd.DataFrame:
    """The company's recent imports and fetches, newest first."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return history.import_log(session, ten.id, limit)


def data_sources(actor: Principal, *, session: Session, tenant: str) -> list[DataSource]:
    ten = authorized_tenant(session, tenant, actor, "view")
    return sources.list_sources(session, ten.id)


def add_source(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    name: str,
    kind: str,
    config: dict[str, Any],
) -> DataSource:
    """Validate a supplier API or web page source and store it, in the caller's transaction."""
    ten = authorized_tenant(session, tenant, actor, "import")
    return ingest.add_source(session, ten.id, name, kind, config)


def fetch_source(actor: Principal, *, session: Session, tenant: str, name: str) -> ImportRun:
    """Fetch one source now and store its prices (undoable); a failure is recorded, not raised.
    The stored forecasts move to the new prices at once."""
    return _refreshed(session, tenant, ingest.run_source(_engine(session), tenant, name, actor))


# -- forecast --------------------------------------------------------------------------------


def current_model(
    actor: Principal, *, session: Session, tenant: str, settings: Settings | None = None
) -> store.StoredModel | None:
    """The company's model in use (loaded once per version and shared), or None before the
    first training. A model file that cannot be used raises ``ModelStoreError``."""
    authorized_tenant(session, tenant, actor, "view")
    return _loaded(tenant, settings)


def _loaded(tenant: str, settings: Settings | None) -> store.StoredModel | None:
    settings = settings or get_settings()
    version = store.current_version(settings.model_dir, tenant)
    if version is None:
        return None
    return store.load_shared(settings.model_dir, tenant, version)


def _model(tenant: str, settings: Settings | None) -> store.StoredModel:
    """The model in use, for an action that has already checked the actor; ``LookupError``
    before the first training."""
    stored = _loaded(tenant, settings)
    if stored is None:
        raise LookupError(
            f"{tenant} has no trained model yet: press Retrain on the Model page or run "
            f"`python -m procurement train --tenant {tenant}`"
        )
    return stored


def current_version(
    actor: Principal, *, session: Session, tenant: str, settings: Settings | None = None
) -> str | None:
    """The version of the company's model in use (a file read, no model load)."""
    authorized_tenant(session, tenant, actor, "view")
    return store.current_version((settings or get_settings()).model_dir, tenant)


def scheduler_running(actor: Principal, *, session: Session) -> bool:
    """Whether the sidecar scheduler is alive (its heartbeat is fresh): it then takes queued
    retrains; without it the app trains in its own process."""
    authorize(actor, "view")
    return retrain.scheduler_alive(_engine(session))


def model_versions(
    actor: Principal, *, session: Session, tenant: str, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Metadata of every stored version of the company's model, newest first."""
    authorized_tenant(session, tenant, actor, "view")
    return store.list_versions((settings or get_settings()).model_dir, tenant)


def training_runs(
    actor: Principal, *, session: Session, tenant: str, limit: int = 20
) -> list[ModelRun]:
    ten = authorized_tenant(session, tenant, actor, "view")
    return runs.list_runs(session, ten.id, limit)


def request_retrain(actor: Principal, *, session: Session, tenant: str) -> tuple[int, bool]:
    """Queue a retrain; returns (run id, whether this request created it)."""
    return retrain.request(_engine(session), tenant, actor)


def train_queued(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    settings: Settings | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ModelRun | None:
    """Work the company's queued retrain in this process (no sidecar running), publish the
    model if it passes its checks and store its forecasts. None when another trainer holds the
    lease or nothing is queued."""
    ten = authorized_tenant(session, tenant, actor, "retrain")
    run_id = retrain.process_next(
        _engine(session), settings or get_settings(), tenant_id=ten.id, progress=progress
    )
    if run_id is None:
        return None
    session.expire_all()
    return runs.get_run(session, run_id)


def train_now(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    settings: Settings | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ModelRun:
    """Queue a retrain and work it in this process now (the CLI's ``train``), through the same
    queue and lease as the sidecar, so two trainings of one company never overlap."""
    request_retrain(actor, session=session, tenant=tenant)
    run = train_queued(actor, session=session, tenant=tenant, settings=settings, progress=progress)
    if run is None:
        raise TrainingBusy(
            "another training holds the lease right now; the request stays queued and the "
            "scheduler (or the next `train`) takes it"
        )
    return run


def rollback(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    version: str,
    settings: Settings | None = None,
) -> None:
    """Make an earlier model version current again and store its forecasts."""
    authorized_tenant(session, tenant, actor, "retrain")
    settings = settings or get_settings()
    store.set_current(settings.model_dir, tenant, version)
    retrain.refresh_forecasts(_engine(session), settings, tenant, version)


def _is_what_if(overrides: Mapping[str, float] | None) -> bool:
    return overrides is not None and any(abs(v - 1.0) > 1e-12 for v in overrides.values())


def _forecast(
    session: Session,
    ten: Tenant,
    stored: store.StoredModel,
    skus: list[str] | None,
    overrides: Mapping[str, float] | None,
    newer: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``newer``: the prices after the model's data, where the caller has read them."""
    # The stored forecasts (refreshed daily and after every retrain) serve the default view, so
    # the shared model is only asked for what-if changes.
    if not _is_what_if(overrides):
        fc = forecasts.load_forecast(session, ten.id, stored.version, skus)
        if fc is not None:
            return fc
    if newer is None:
        newer = retrain.newer_prices(session, ten.id, stored.model)
    return stored.model.predict(overrides=overrides, ids=skus, prices=newer)


def forecast(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    skus: list[str] | None = None,
    overrides: Mapping[str, float] | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """Daily forecasts over the horizon with 80% and 95% intervals per product; ``overrides``
    are what-if factors on the drivers, e.g. ``{"fx": 1.05, "index:steel": 0.9}``."""
    ten = authorized_tenant(session, tenant, actor, "view")
    stored = _model(tenant, settings)
    unknown = sorted(set(skus or ()) - set(stored.model.products))
    if unknown:
        # mlforecast's own words ("ids weren't seen during training") said nothing a buyer can do
        need = min_history(stored.model.spec, stored.model.horizon)
        raise LookupError(
            f"no forecast for {', '.join(unknown)}: not in model {stored.version}, which forecasts "
            f"the products with at least {need} periods of prices when it was trained (a new "
            "product is forecast from the first retrain after it has them; check the spelling)"
        )
    return _forecast(session, ten, stored, skus, overrides)


def check_drift(
    actor: Principal, *, session: Session, tenant: str, settings: Settings | None = None
) -> monitoring.DriftResult | None:
    """Compare the latest weeks with the training window now (the sidecar does it hourly); a
    retrain is queued once per model version above the thresholds."""
    authorized_tenant(session, tenant, actor, "retrain")
    return monitoring.check_drift(_engine(session), settings or get_settings(), tenant)


def drift_history(
    actor: Principal, *, session: Session, tenant: str
) -> tuple[pd.DataFrame, list[DriftRetrain]]:
    """The company's drift checks over time and the retrains they triggered."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return monitoring_db.drift_history(session, ten.id), monitoring_db.drift_retrains(
        session, ten.id
    )


# -- advice ----------------------------------------------------------------------------------


def catalog(actor: Principal, *, session: Session, tenant: str) -> pd.DataFrame:
    """The company's products with supplier, stock, lead time and recent daily demand."""
    ten = authorized_tenant(session, tenant, actor, "view")
    products = catalog_db.load_products(session, ten.id)
    demand = history.demand_per_day(session, ten.id)
    return products.assign(daily_demand=products["sku"].map(demand).fillna(0.0))


def price_history(
    actor: Principal, *, session: Session, tenant: str, sku: str, days: int = 180
) -> pd.DataFrame:
    """Recent prices of one product: ``date, price`` (empty for an unknown sku)."""
    ten = authorized_tenant(session, tenant, actor, "view")
    return history.product_prices(session, ten.id, sku, days)


def _policy(model: PriceModel, min_confidence: float | None, settings: Settings) -> Policy:
    policy = buying.advice_policy(model, settings.min_confidence, settings.min_saving_pct)
    if min_confidence is not None:
        policy = policy.with_min_confidence(min_confidence)
    return policy


def advice(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    overrides: Mapping[str, float] | None = None,
    min_confidence: float | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """The company's advice, one row per product: buy day, saving per unit and for the quantity
    needed over the horizon, confidence and reason, waiting capped by stock and lead time."""
    settings = settings or get_settings()
    ten = authorized_tenant(session, tenant, actor, "view")
    stored = _model(tenant, settings)
    products = catalog_db.load_products(session, ten.id)
    demand = history.demand_per_day(session, ten.id)
    # prices that came in since the training: the forecasts start from them, and so does what
    # counts as an old price
    newer = retrain.newer_prices(session, ten.id, stored.model)
    fc = _forecast(session, ten, stored, None, overrides, newer)
    recs = buying.advice_table(
        stored.model,
        products,
        demand,
        _policy(stored.model, min_confidence, settings),
        forecast=fc,
        stale=stored.model.stale_prices(newer),
    )
    return recs.assign(version=stored.version)


@dataclass(frozen=True)
class ProductAdvice:
    """One product's forecast and advice for the buyer's situation, and where it came from."""

    sku: str
    forecast: pd.DataFrame
    rec: pd.Series
    decision: buying.Decision
    record: str | None  # the product's own record in the model's backtest
    promotions: str | None  # its promotion calendar, where the forecast follows one
    version: str
    data_end: dt.date


def _decision(products: pd.DataFrame, demand: pd.Series, sku: str, horizon: int, conf: float):
    row = products.set_index("sku").loc[sku]
    daily = float(demand.get(sku, 0.0))
    on_hand = float(row["on_hand"]) if pd.notna(row["on_hand"]) else float("inf")
    lead = int(row["lead_time_days"]) if pd.notna(row["lead_time_days"]) else 0
    return buying.Decision(float(round(daily * horizon)), on_hand, daily, lead, conf)


def product_advice(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    sku: str,
    decision: buying.Decision | None = None,
    overrides: Mapping[str, float] | None = None,
    settings: Settings | None = None,
) -> ProductAdvice:
    """Forecast and advice of one product. ``decision``: the buyer's quantity, stock, lead time
    and required confidence (default: the catalog's stock and lead time, recent demand, the
    learned policy); ``overrides``: what-if factors on the drivers."""
    settings = settings or get_settings()
    ten = authorized_tenant(session, tenant, actor, "view")
    stored = _model(tenant, settings)
    model = stored.model
    if sku not in model.last_price:
        raise LookupError(f"{sku} has no forecast yet: it is new since model {stored.version}")
    policy = _policy(model, None, settings).of(sku)
    if decision is None:
        # this product's row and demand only: the whole catalog's were a fifth of the app's
        # time per page under load (200 products), and grow with the catalog
        products = catalog_db.load_products(session, ten.id, skus=[sku])
        demand = history.demand_per_day(session, ten.id, skus=[sku])
        decision = _decision(products, demand, sku, model.horizon, policy.min_confidence)
    fc = _forecast(session, ten, stored, [sku], overrides)
    days = workdays.parse(catalog_db.working_days_of(session, ten.id, sku))
    newer = _newer_of(session, ten.id, model, sku)
    # its price against the company's newest day (an indexed max: no other product is read)
    stale = model.stale_prices(
        newer.assign(sku=sku), newest=history.latest_price_date(session, ten.id)
    )
    rec = buying.decide(
        fc, sku, decision, policy.min_saving_pct, days, policy=policy, price_from=stale.get(sku)
    )
    return ProductAdvice(
        sku,
        fc,
        rec,
        decision,
        buying.backtest_record(model, sku),
        buying.promotion_pattern(model, sku, today=dt.date.today(), newer=newer),
        stored.version,
        model.last_date.date(),
    )


def _newer_of(session: Session, tenant_id: int, model: PriceModel, sku: str) -> pd.DataFrame:
    """One product's prices after the model's data (``date, price``)."""
    days = max(1, (dt.date.today() - model.last_date.date()).days + 1)
    recent = history.product_prices(session, tenant_id, sku, days)
    return recent[pd.to_datetime(recent["date"]) > model.last_date]


def driver_effects(
    actor: Principal,
    *,
    session: Session,
    tenant: str,
    sku: str,
    settings: Settings | None = None,
) -> list[tuple[str, str, float]]:
    """Per what-if driver of the product: (override key, label, % its last forecast moves when
    the driver rises 20%), measured on the model itself."""
    authorized_tenant(session, tenant, actor, "view")
    stored = _model(tenant, settings)
    effects = _effects_of(stored).get(sku, {})
    return [
        (key, label, effects.get(key, 0.0))
        for key, label in buying.what_if_drivers(stored.model, sku)
    ]


_EFFECTS: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
_EFFECTS_LOCK = threading.Lock()


def _effects_of(stored: store.StoredModel) -> dict[str, dict[str, float]]:
    # once per model version and process, for every product: the Product page of every buyer
    # reads it instead of asking the shared model 1 + k times per product
    key = (str(stored.path), stored.version)
    with _EFFECTS_LOCK:
        if key not in _EFFECTS:
            if len(_EFFECTS) >= 8:
                _EFFECTS.pop(next(iter(_EFFECTS)))
            _EFFECTS[key] = buying.driver_effects(stored.model)
        return _EFFECTS[key]


# -- accounts --------------------------------------------------------------------------------


def users(actor: Principal, *, session: Session) -> list[AppUser]:
    """The accounts ``actor`` manages: all for a global administrator, else their company's."""
    return auth.users_managed_by(session, actor)


def add_user(
    actor: Principal,
    *,
    session: Session,
    username: str,
    password: str,
    role: str,
    tenant: str | None,
    name: str = "",
    email: str = "",
) -> AppUser:
    """Create an account in company ``tenant`` (None: a global administrator)."""
    authorize(actor, "admin")
    tenant_id = None
    if tenant is not None:
        ten = catalog_db.get_tenant(session, tenant)
        if ten is None:
            raise ValueError(f"unknown company {tenant!r}")
        tenant_id = ten.id
    return auth.add_user(
        session, username, password, role, tenant_id, actor=actor, name=name, email=email
    )


def set_password(actor: Principal, *, session: Session, username: str, password: str) -> None:
    auth.set_password(session, username, password, actor=actor)


def set_active(actor: Principal, *, session: Session, username: str, active: bool) -> None:
    """(De)activate an account; a deactivated user is signed out at their next click."""
    auth.set_active(session, username, active, actor=actor)


def set_role(actor: Principal, *, session: Session, username: str, role: str) -> None:
    auth.set_role(session, username, role, actor=actor)


def create_company(actor: Principal, *, session: Session, slug: str, name: str = "") -> Tenant:
    return auth.create_company(session, slug, name, actor=actor)
