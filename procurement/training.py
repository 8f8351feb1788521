"""Training a company's model from the database: load its history in bulk, fit and backtest
(``forecast.model``, which knows nothing of the database), save the version, record the run,
and make it current once the run's row is committed. The retrain job (``retrain``) calls this."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import event
from sqlalchemy.orm import Session

from procurement.config import Settings, get_settings
from procurement.db import catalog, history
from procurement.db.models import ModelRun
from procurement.db.runs import DONE, REJECTED, RUNNING
from procurement.forecast import store
from procurement.forecast.features import infer_freq, is_coarse
from procurement.forecast.model import (
    ModelParams,
    PriceModel,
    TrainingData,
    describe_params,
    fit_price_model,
)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class TrainResult:
    version: str
    metadata: dict[str, Any]
    model: PriceModel
    # every product's forecast from the model's own data, computed by the save's check
    forecast: pd.DataFrame | None = None


def params_from(settings: Settings) -> ModelParams:
    return ModelParams(
        n_estimators=settings.lgbm_n_estimators,
        learning_rate=settings.lgbm_learning_rate,
        num_leaves=settings.lgbm_num_leaves,
        conformal_windows=settings.conformal_windows,
        max_history=settings.train_max_days,
        seed=settings.random_seed,
    )


def load_training_data(
    session: Session, tenant_id: int, max_days: int | None = None
) -> TrainingData:
    """A company's prices, drivers, sales and categories, as the model wants them."""
    # the first and last dates come from an index; a count of the rows was a scan (2 s at
    # 10,000 products)
    first, last = history.price_dates(session, tenant_id)
    if first is None or last is None:
        raise ValueError("no price history yet: import prices or run `procurement seed`")
    since = None
    if max_days:
        # a month more than the model uses, for the rolling windows of the first rows
        since = last - dt.timedelta(days=int(max_days * 1.5) + 60)
    # sales are as long as the prices at most: read them beside the prices when that is long
    days = (last - max(first, since or first)).days + 1
    sales_read = history.SalesRead(
        session, tenant_id, since, days * catalog.count_products(session, tenant_id)
    )

    def prices_since(start: dt.date | None) -> pd.DataFrame:
        return history.load_prices(session, tenant_id, start, committed=True).rename(
            columns={"sku": "unique_id", "date": "ds", "price": "y"}
        )

    try:
        prices = prices_since(since)
        if since is not None and prices["ds"].nunique() > 1 and is_coarse(infer_freq(prices)):
            # weekly series are trained whole (``forecast.model.prepare``): a few years of
            # weeks are too few market turns to learn from, and whole histories are few rows
            since = None
            prices = prices_since(None)
            sales_read.cancel()
            sales_read = history.SalesRead(session, tenant_id, None, 0)
        drivers = history.load_drivers(session, tenant_id, since, committed=True).rename(
            columns={"date": "ds"}
        )
        sales = sales_read().rename(columns={"sku": "unique_id", "date": "ds"})
    except BaseException:
        sales_read.cancel()
        raise
    products = catalog.load_products(session, tenant_id)
    return TrainingData(
        prices=prices,
        drivers=drivers if len(drivers) else None,
        sales=sales if len(sales) else None,
        categories=dict(zip(products["sku"], products["category"], strict=True)),
        # a product without a price on the newest day is forecast from it too, at its last
        # price (its buy day had been in the past)
        until=pd.Timestamp(last),
    )


def train_global_lgbm_model(
    session: Session,
    tenant: str,
    settings: Settings | None = None,
    progress: Progress | None = None,
    run: ModelRun | None = None,
    make_current: bool = True,
) -> TrainResult:
    """Train one global model for ``tenant`` and save it under a new version; it becomes current
    when the caller commits ``session`` (where the run is recorded), not before."""
    settings = settings or get_settings()
    say = progress or (lambda f, m: None)
    ten = catalog.get_tenant(session, tenant)
    if ten is None:
        raise ValueError(f"unknown company {tenant!r}")
    started = dt.datetime.now(dt.UTC)
    say(0.02, "loading history from the database")
    data = load_training_data(session, ten.id, settings.train_max_days)
    freq = infer_freq(data.prices)
    params = params_from(settings)
    if settings.dask_scheduler_address:
        # past one machine: the same model, features computed and trees trained on a Dask
        # cluster (procurement/forecast/distributed.py); saved and served like any other
        from procurement.forecast.distributed import fit_on_cluster

        model = fit_on_cluster(
            data, freq, settings.horizon, params, settings.dask_scheduler_address, progress=say
        )
    else:
        model = fit_price_model(data, freq, settings.horizon, params, progress=say)
    say(0.92, "saving and checking the model")
    ds = pd.to_datetime(data.prices["ds"])
    meta = {
        "version": store.new_version(),
        "trained_at": started.isoformat(),
        "training_seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 2),
        "data_start": str(ds.min().date()),
        "data_end": str(ds.max().date()),
        "n_products": len(model.products),
        "n_rows": len(data.prices),
        "freq": freq,
        "horizon": settings.horizon,
        "features": model.features,
        "exogenous": model.exog,
        "params": describe_params(params, model.fcst),
        "metrics": model.metrics,
    }
    verdict = promotion_verdict(
        store.read_metadata(settings.model_dir, tenant), meta, settings.promote_margin
    )
    meta["promotion"] = verdict or "promoted"
    saved = store.save_version(settings.model_dir, tenant, model, meta, make_current=False)
    # report before writing the run row: a progress writer on another connection must not wait
    # for this transaction (SQLite has one writer at a time)
    say(1.0, f"model {saved.version} is current" if verdict is None else verdict)
    if run is None:
        run = ModelRun(
            tenant_id=ten.id,
            requested_by="cli",
            status=RUNNING,
            started_at=started.replace(tzinfo=None),
        )
        session.add(run)
    run.version = saved.version
    run.status = DONE if verdict is None else REJECTED
    run.message = verdict or "published"
    run.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run.data_start = ds.min().date()
    run.data_end = ds.max().date()
    run.n_products = len(model.products)
    run.metrics = model.metrics
    run.model_path = str(saved.path)
    run.progress = 1.0
    session.flush()
    publish = saved.version if make_current and verdict is None else None
    _publish_after_commit(session, settings, tenant, publish)
    return TrainResult(saved.version, saved.metadata, model, saved.checked_forecast)


_PENDING = "procurement.publish_after_commit"
_COMMITTED = "procurement.committed"


def _publish_after_commit(
    session: Session, settings: Settings, tenant: str, version: str | None
) -> None:
    """Make ``version`` current (and prune old versions) once the caller commits the run's row.

    Publishing first would leave a model in use that the database does not record when the
    commit fails or the process dies before it; a rolled-back transaction publishes nothing.
    """
    session.info.setdefault(_PENDING, []).append(
        (session.get_transaction(), settings, tenant, version)
    )
    if not event.contains(session, "after_transaction_end", _on_transaction_end):
        event.listen(session, "after_commit", _on_commit)
        event.listen(session, "after_transaction_end", _on_transaction_end)


def _on_commit(session: Session) -> None:
    session.info[_COMMITTED] = True  # the root transaction's end follows at once


def _on_transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is not None:
        return  # a savepoint or inner transaction: nothing is durable yet
    committed = session.info.pop(_COMMITTED, False)
    pending = session.info.get(_PENDING, [])
    mine = [p for p in pending if p[0] is transaction]
    session.info[_PENDING] = [p for p in pending if p[0] is not transaction]
    if committed:
        for _, settings, tenant, version in mine:
            if version is not None:
                store.set_current(settings.model_dir, tenant, version, verify=False)
            store.prune(settings.model_dir, tenant, settings.keep_model_versions)


def _error_ratio(meta: dict[str, Any]) -> float | None:
    try:
        return float(meta["metrics"]["model"]["mase"]) / float(meta["metrics"]["naive"]["mase"])
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def promotion_verdict(
    current: dict[str, Any] | None, new: dict[str, Any], margin: float
) -> str | None:
    """None if the new model may replace the current one, else the reason it may not.

    Compares MASE relative to the naive forecast, which stays comparable when the data changed.
    """
    if current is None:
        return None
    old, cand = _error_ratio(current), _error_ratio(new)
    if old is None or cand is None:
        return None
    if cand > old * (1 + margin):
        return f"kept, not promoted: backtest error ratio {cand:.3f} is worse than the current {old:.3f}"
    return None
