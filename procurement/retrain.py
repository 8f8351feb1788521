"""Retraining as a queued job: request, one trainer at a time (a lease in the database), progress
for the app, safe publishing, and recovery after a crash. Used by the sidecar scheduler, and by
the app when no sidecar is running."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from procurement.auth import Principal, authorized_tenant
from procurement.config import Settings
from procurement.db import catalog, forecasts, history, open_session, runs
from procurement.forecast import store
from procurement.forecast.model import PriceModel

TRAIN_LOCK = "training"
HEARTBEAT = "heartbeat:scheduler"
log = logging.getLogger(__name__)


# Tells this process apart from an earlier one with the same host name and pid: in a container
# the scheduler is PID 1 under a fixed host name on every restart.
_PROCESS_TOKEN = uuid.uuid4().hex[:12]


def _host() -> str:
    return socket.gethostname()[:120]  # job_lock.holder holds 200 characters


def holder_id() -> str:
    """This process as a lease holder: ``host:pid:token``."""
    return f"{_host()}:{os.getpid()}:{_PROCESS_TOKEN}"


def new_holder() -> str:
    """A holder of its own for one training: app sessions share a process but not a lease."""
    return f"{holder_id()}.{uuid.uuid4().hex[:8]}"


def request(engine: Engine, tenant: str, actor: Principal) -> tuple[int, bool]:
    """Queue a retrain of ``tenant``; ten clicks while one waits give one run, not ten."""
    for attempt in range(5):
        try:
            with open_session(engine) as s, s.begin():
                ten = authorized_tenant(s, tenant, actor, "retrain")
                run, created = runs.request_retrain(s, ten.id, actor.username)
                return run.id, created
        except (runs.QueueRace, OperationalError):
            # a concurrent click won the queue slot (or MySQL chose this one as a deadlock
            # victim): a new transaction sees the run it queued
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _pid_alive(holder: str) -> bool:
    host, pid, token = [*holder.split(":"), "", "", ""][:3]
    if host != _host() or not pid.isdigit():
        return True  # another machine: trust the lease's expiry instead
    if int(pid) == os.getpid():
        # our pid: held by this very process, or by a dead predecessor that had the same pid
        return token.split(".")[0] == _PROCESS_TOKEN
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(engine: Engine) -> int:
    """After a crash: free a lease held by a dead process on this host and requeue its run."""
    with open_session(engine) as s, s.begin():
        lock = runs.lock_info(s, TRAIN_LOCK)
        if lock is not None and (lock.expires_at < runs.now() or not _pid_alive(lock.holder)):
            runs.break_lock(s, TRAIN_LOCK)
            lock = None
        if lock is None:
            return runs.requeue_orphans(s)
    return 0


class _KeepAlive(threading.Thread):
    """Renews the training lease while LightGBM is busy and reports nothing."""

    def __init__(self, engine: Engine, holder: str, ttl: float) -> None:
        super().__init__(daemon=True)
        self.engine, self.holder, self.ttl = engine, holder, ttl
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(max(self.ttl / 3, 0.5)):
            try:
                with open_session(self.engine) as s, s.begin():
                    if not runs.renew_lock(s, TRAIN_LOCK, self.holder, self.ttl):
                        log.warning("the training lease of %s was lost", self.holder)
            except Exception:  # a missed renewal is retried; the lease has slack
                log.warning("could not renew the training lease", exc_info=True)


def process_next(
    engine: Engine,
    settings: Settings,
    holder: str | None = None,
    tenant_id: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> int | None:
    """Take the lease, train the oldest queued run, publish, release. Returns the run id, or
    None when another trainer holds the lease or nothing is queued."""
    holder = holder or new_holder()
    ttl = settings.lock_ttl_seconds
    with open_session(engine) as s, s.begin():
        if not runs.acquire_lock(s, TRAIN_LOCK, holder, ttl):
            return None
    keepalive = _KeepAlive(engine, holder, ttl)
    keepalive.start()
    try:
        with open_session(engine) as s, s.begin():
            run = runs.claim_next(s, tenant_id)
            if run is None:
                return None
            run_id = run.id
            slug = catalog.get_tenant_by_id(s, run.tenant_id).slug
        _train(engine, settings, run_id, slug, progress)
        return run_id
    finally:
        keepalive.stop.set()
        keepalive.join(timeout=5)
        with open_session(engine) as s, s.begin():
            runs.release_lock(s, TRAIN_LOCK, holder)


def _train(
    engine: Engine,
    settings: Settings,
    run_id: int,
    slug: str,
    progress: Callable[[float, str], None] | None,
) -> None:
    from procurement.training import train_global_lgbm_model

    last: list[Any] = [0.0, None]

    def say(frac: float, msg: str) -> None:
        if progress:
            progress(frac, msg)
        # a new step is always written (a long one must not show the step before it); repeats
        # of the same step at most twice a second
        if msg == last[1] and time.monotonic() - last[0] < 0.5 and frac < 1:
            return
        last[0], last[1] = time.monotonic(), msg
        with open_session(engine) as s2, s2.begin():
            r = runs.get_run(s2, run_id)
            if r is not None:
                r.progress, r.message = frac, msg

    try:
        with open_session(engine) as s, s.begin():
            run = runs.get_run(s, run_id)
            res = train_global_lgbm_model(s, slug, settings, progress=say, run=run)
            promoted = run is not None and run.status == runs.DONE
        if promoted:
            refresh_forecasts(engine, settings, slug, res.version, checked=res.forecast)
    except Exception as exc:
        # the data's fault (too short a history, one stray date) is said in one line, as the
        # run records it; anything else is a fault of ours and keeps its traceback in the log
        said = isinstance(exc, ValueError)
        if said:
            log.error("training %s failed: %s", slug, exc)
        else:
            log.exception("training %s failed", slug)
        with open_session(engine) as s, s.begin():
            r = runs.get_run(s, run_id)
            if r is not None:
                r.status, r.message, r.finished_at = (
                    runs.FAILED,
                    str(exc) if said else f"{type(exc).__name__}: {exc}",
                    runs.now(),
                )


def refresh_forecasts(
    engine: Engine,
    settings: Settings,
    slug: str,
    version: str | None = None,
    checked: pd.DataFrame | None = None,
) -> int:
    """Predict every product with the current model, starting from the newest stored prices
    (those that came in since the model was trained move the forecasts without a retrain), and
    store the forecasts for the pages. ``checked``: the forecast of ``version`` from its own
    data (what the save's check computed), used when no newer price came in meanwhile."""
    stored = store.load_shared(
        settings.model_dir, slug, version or store.load_version_name(settings.model_dir, slug)
    )
    with open_session(engine) as s:
        ten = catalog.get_tenant(s, slug)
        if ten is None:
            return 0
        tenant_id = ten.id
        newer = newer_prices(s, tenant_id, stored.model)
    if newer is None and checked is not None and version is not None:
        fc = checked  # the same call on the same model: predicting all products again took 4 s
    else:
        fc = stored.model.predict(prices=newer)
    with open_session(engine) as s, s.begin():
        return forecasts.store_forecast(s, tenant_id, stored.version, fc)


def newer_prices(session: Session, tenant_id: int, model: PriceModel) -> pd.DataFrame | None:
    """The company's prices after the model's last date (None when there are none)."""
    since = (model.last_date + pd.Timedelta(days=1)).date()
    prices = history.load_prices(session, tenant_id, since=since)
    return prices if len(prices) else None


def needs_retrain(engine: Engine, settings: Settings, slug: str) -> bool:
    """True when the company has prices newer than the current model's data (or no model)."""
    meta = store.read_metadata(settings.model_dir, slug)
    with open_session(engine) as s:
        ten = catalog.get_tenant(s, slug)
        if ten is None:
            return False
        latest = history.latest_price_date(s, ten.id)
    if latest is None:
        return False
    return meta is None or str(latest) > str(meta.get("data_end"))


def heartbeat(engine: Engine, holder: str, ttl: float) -> None:
    with open_session(engine) as s, s.begin():
        runs.acquire_lock(s, HEARTBEAT, holder, ttl)


def scheduler_alive(engine: Engine) -> bool:
    with open_session(engine) as s:
        lock = runs.lock_info(s, HEARTBEAT)
        return lock is not None and lock.expires_at > runs.now()
