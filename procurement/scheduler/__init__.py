"""The sidecar scheduler: ``python -m procurement.scheduler``.

APScheduler with its job store in the application database. Jobs: work the retrain queue every
few seconds (requests come from the app's Retrain button), retrain every company on a cron
schedule, refresh stored forecasts daily, and check drift hourly. It also serves the Prometheus
metrics on ``METRICS_PORT`` (see procurement.monitoring). One training at a time across processes is
guaranteed by a lease in the database, not by this process.
"""

from __future__ import annotations

import logging

from procurement import actions, monitoring, retrain
from procurement.auth import Principal
from procurement.config import get_settings
from procurement.db import catalog, get_engine, open_session

log = logging.getLogger("procurement.scheduler")
SCHEDULE = Principal("schedule", "admin", None)  # who the scheduled jobs act as


def process_queue() -> None:
    """Heartbeat, then train queued runs until the queue is empty or another trainer has it."""
    settings = get_settings()
    engine = get_engine()
    holder = retrain.holder_id()
    retrain.heartbeat(engine, holder, max(3 * settings.scheduler_poll_seconds, 15))
    while (run_id := retrain.process_next(engine, settings, holder)) is not None:
        _after_run(engine, settings, run_id)
        retrain.heartbeat(engine, holder, max(3 * settings.scheduler_poll_seconds, 15))


def _after_run(engine, settings, run_id: int) -> None:
    """Log the run as one structured event; keep its forecasts and check drift and advice."""
    from procurement.db import runs

    with open_session(engine) as s:
        run = runs.get_run(s, run_id)
        ten = catalog.get_tenant_by_id(s, run.tenant_id) if run is not None else None
    if run is None or ten is None:
        return
    seconds = (
        (run.finished_at - run.started_at).total_seconds()
        if run.finished_at and run.started_at
        else None
    )
    with monitoring.log_context(company=ten.slug, run=run_id, version=run.version):
        log.info(
            "finished run %s: %s in %ss",
            run_id,
            run.status,
            None if seconds is None else round(seconds, 1),
            extra={"event": "training_finished"},
        )
    if run.status == "done":
        monitoring.monitor_company(engine, settings, ten.slug)


def enqueue_all() -> None:
    """The scheduled retrain: queue every company (requests already waiting are reused)."""
    engine = get_engine()
    with open_session(engine) as s:
        slugs = [t.slug for t in catalog.list_tenants(s)]
    with open_session(engine) as s:
        for slug in slugs:
            actions.request_retrain(SCHEDULE, session=s, tenant=slug)


def refresh_all() -> None:
    """Daily: store fresh forecasts of every company's current model, and queue a retrain where
    prices newer than the model's data have arrived (imports, supplier APIs, web pages); then
    check drift."""
    settings = get_settings()
    engine = get_engine()
    with open_session(engine) as s:
        slugs = [t.slug for t in catalog.list_tenants(s)]
    for slug in slugs:
        try:
            if retrain.needs_retrain(engine, settings, slug):
                with open_session(engine) as s:
                    actions.request_retrain(SCHEDULE, session=s, tenant=slug)
                log.info("new prices for %s: retrain queued", slug)
            with monitoring.timed("prediction", slug, engine):
                n = retrain.refresh_forecasts(engine, settings, slug)
            log.info("refreshed %d forecasts of %s", n, slug)
        except Exception:  # one company's missing model must not stop the others
            log.warning("could not refresh forecasts of %s", slug, exc_info=True)
            continue
        refresh_orders(engine, slug)
    monitoring.monitor_all(engine, settings)


def refresh_orders(engine, slug: str) -> None:
    """After the forecasts: replace the company's unedited draft orders with fresh proposals
    (approved, sent, received, cancelled and edited orders are left alone)."""
    try:
        with open_session(engine) as s, s.begin():
            made = actions.propose_orders(SCHEDULE, session=s, tenant=slug)
        log.info("%s: %d draft orders proposed", slug, len(made))
    except Exception:  # no model or no sales yet: the drafts stay as they are
        log.warning("could not refresh draft orders of %s", slug, exc_info=True)


def monitor() -> None:
    """Hourly: keep the current forecasts, check data and concept drift (a retrain is queued once
    per model version above the thresholds), and count the advice for the metrics."""
    monitoring.monitor_all(get_engine(), get_settings())


def fetch_sources() -> None:
    """Daily: fetch every active supplier API and web page source."""
    from procurement import ingest

    n = ingest.run_all(get_engine())
    log.info("fetched %d data sources", n)
