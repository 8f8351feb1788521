"""Monitoring: Prometheus metrics, drift checks with drift-triggered retrains, the app's latency,
and structured logs.

The scheduler sidecar serves ``/metrics`` on ``METRICS_PORT``. The values are read from the
database at scrape time (runs, queue, lease, prices, imports, drift checks, the app's latency) and
from the model files (backtest metrics, age), so they hold for runs made by the app or the CLI
too, and survive a restart of the sidecar. The app only adds latency to a small histogram table
from a background thread; the sidecar exports it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import Engine

from procurement import drift
from procurement.config import Settings
from procurement.db import catalog, history, open_session, runs
from procurement.db import monitoring as mdb
from procurement.forecast import store

log = logging.getLogger("procurement.monitoring")

TRAIN_LOCK = "training"  # the name of the training lease (procurement.retrain.TRAIN_LOCK)
# Every metric family the sidecar exports, by type (what the Grafana dashboard and the alert rules
# may use; a test holds the collector to this list).
METRIC_FAMILIES = {
    "procurement_metrics_up": "gauge",
    "procurement_training_runs": "counter",
    "procurement_training_duration_seconds": "histogram",
    "procurement_retrain_queue_length": "gauge",
    "procurement_lease_held": "gauge",
    "procurement_price_age_seconds": "gauge",
    "procurement_model_info": "gauge",
    "procurement_model_age_seconds": "gauge",
    "procurement_model_trained_rows": "gauge",
    "procurement_model_trained_products": "gauge",
    "procurement_model_backtest_mase": "gauge",
    "procurement_model_backtest_naive_mase": "gauge",
    "procurement_model_backtest_coverage_80": "gauge",  # when the model's backtest measured it
    "procurement_model_live_mase": "gauge",
    "procurement_model_live_coverage_80": "gauge",
    "procurement_model_live_actuals": "gauge",
    "procurement_ingested_rows": "counter",
    "procurement_ingest_rejected_rows": "counter",
    "procurement_fetch_failures": "counter",
    "procurement_recommendations": "gauge",
    "procurement_waits_advised": "gauge",
    "procurement_drift_data_psi": "gauge",
    "procurement_drift_feature_psi": "gauge",
    "procurement_drift_concept_ratio": "gauge",
    "procurement_drift_checked_timestamp_seconds": "gauge",
    "procurement_drift_retrains": "counter",
    "procurement_latency_seconds": "histogram",
}
_SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def sample_names() -> set[str]:
    """The names of the samples in the exposition (``_total``, ``_bucket``... included)."""
    return {f + sfx for f, kind in METRIC_FAMILIES.items() for sfx in _SUFFIXES[kind]}


DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# --- structured logs -------------------------------------------------------------------------

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)
CONTEXT_FIELDS = ("company", "run", "version")


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every log line inside carries these fields (company, run, version)."""
    token = _context.set(
        {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in (_context.get() or {}).items():
            if not hasattr(record, k):
                setattr(record, k, v)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, the error."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k in (*CONTEXT_FIELDS, "event"):
            if getattr(record, k, None) is not None:
                out[k] = getattr(record, k)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = " ".join(
            f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None)
        )
        return f"{line} [{ctx}]" if ctx else line


def configure_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Root logging to stderr, one line per event: JSON with ``LOG_FORMAT=json``, else text."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else _TextFormatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# --- the app's latency -----------------------------------------------------------------------


class LatencyRecorder:
    """Collects latencies in memory and adds them to the database every ``interval`` seconds
    from a daemon thread, so a page never waits for the write (nor fails because of it)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = {}
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None

    def observe(self, operation: str, target: str, seconds: float, engine: Engine) -> None:
        name = f"{operation}|{target}"
        with self._lock:
            for le in LATENCY_BUCKETS:
                if seconds <= le:
                    self._pending[(name, repr(le))] = self._pending.get((name, repr(le)), 0) + 1
            for key, inc in (("+Inf", 1.0), ("count", 1.0), ("sum", seconds)):
                self._pending[(name, key)] = self._pending.get((name, key), 0) + inc
            self._engine = engine
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, daemon=True, name="latency-flush"
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, engine = self._pending, {}, self._engine
        if not pending or engine is None:
            return
        try:
            with open_session(engine) as s, s.begin():
                mdb.add_latency(s, pending)
        except Exception:  # a lost sample must not break anything; try again next time
            log.debug("could not store latency samples", exc_info=True)
            with self._lock:
                for k, v in pending.items():
                    self._pending[k] = self._pending.get(k, 0) + v


recorder = LatencyRecorder()


@contextlib.contextmanager
def timed(operation: str, target: str, engine: Engine) -> Iterator[None]:
    """Time the block into ``procurement_latency_seconds{operation, target}``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        try:
            recorder.observe(operation, target, time.perf_counter() - t0, engine)
        except Exception:  # never let monitoring break a page
            log.debug("latency not recorded", exc_info=True)


# --- drift -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    company: str
    version: str
    data: drift.DataDrift
    live: drift.LiveError
    backtest_mase: float | None
    retrain_run: int | None  # the run queued because of this check, if any

    @property
    def concept(self) -> float | None:
        if self.backtest_mase and self.live.n and math.isfinite(self.live.mase):
            return self.live.mase / self.backtest_mase
        return None


def _backtest_mase(meta: dict[str, Any] | None) -> float | None:
    if meta is None:
        return None
    try:
        v = float(meta["metrics"]["model"]["mase"])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def archive_current(engine: Engine, settings: Settings, slug: str) -> int:
    """Keep the current model's stored forecasts for later comparison with actual prices."""
    version = store.current_version(settings.model_dir, slug)
    if version is None:
        return 0
    with open_session(engine) as s, s.begin():
        ten = catalog.get_tenant(s, slug)
        return 0 if ten is None else mdb.archive_forecasts(s, ten.id, version)


def check_drift(engine: Engine, settings: Settings, slug: str) -> DriftResult | None:
    """Measure data and concept drift of the company's current model, store the check, and queue
    one retrain per model version when either is above its threshold. None without a model."""
    meta = store.read_metadata(settings.model_dir, slug)
    if meta is None:
        return None
    version = str(meta["version"])
    with log_context(company=slug, version=version):
        archive_current(engine, settings, slug)
        start = dt.date.fromisoformat(str(meta["data_start"]))
        end = dt.date.fromisoformat(str(meta["data_end"]))
        with open_session(engine) as s:
            ten = catalog.get_tenant(s, slug)
            if ten is None:
                return None
            since = start - dt.timedelta(days=drift.LEVEL_WINDOW + 30)
            prices = history.load_prices(s, ten.id, since, committed=True)
            drivers = history.load_drivers(s, ten.id, since, committed=True)
            sales = history.load_sales(s, ten.id, since, committed=True)
            newest = prices["date"].max().date() if len(prices) else end
            # drivers may run ahead of the prices; the latest weeks are the prices' latest weeks
            drivers = drivers[pd.to_datetime(drivers["date"]) <= pd.Timestamp(newest)]
            sales = sales[pd.to_datetime(sales["date"]) <= pd.Timestamp(newest)]
            recent_from = newest - dt.timedelta(days=settings.drift_recent_days - 1)
            archived = mdb.archived_forecasts(s, ten.id, since=recent_from, version=version)
        feats = drift.features(prices, drivers, sales)
        data = drift.data_drift(feats, start, end, settings.drift_recent_days)

        # concept drift: this model's own forecasts against the prices that came in since, over
        # its own backtest error (an older model's misses must not send a new one retraining)
        archived = archived[archived["version"] == version]
        window = prices[
            (prices["date"] >= pd.Timestamp(start)) & (prices["date"] <= pd.Timestamp(end))
        ]
        live = drift.live_error(archived, prices, drift.product_scale(window))
        bt = _backtest_mase(meta)
        result = DriftResult(slug, version, data, live, bt, None)

        reasons = []
        # only prices the model has not seen can call for a retrain: a model trained on the
        # shifted weeks still shows their PSI, but retraining it again would change nothing
        if data.score > settings.drift_psi_threshold and newest > end:
            top = max(data.psi, key=lambda k: data.psi[k])
            reasons.append(f"data drift: PSI {data.score:.2f} of {top}")
        concept = result.concept
        if (
            concept is not None
            and live.n >= settings.concept_drift_min_actuals
            and concept > settings.concept_drift_threshold
        ):
            reasons.append(f"concept drift: live error {concept:.2f}x the backtest's")
        run_id = None
        with open_session(engine) as s, s.begin():
            mdb.add_drift_check(
                s,
                ten.id,
                version,
                data_drift=data.score,
                live_mase=live.mase if live.n else None,
                backtest_mase=bt,
                concept_drift=concept,
                live_coverage_80=live.coverage_80 if live.n else None,
                n_actuals=live.n,
                features={k: round(v, 6) for k, v in data.psi.items()},
            )
            if reasons and mdb.claim_drift_retrain(s, ten.id, version, "; ".join(reasons)):
                run, _ = runs.request_retrain(s, ten.id, "drift")
                mdb.set_drift_retrain_run(s, ten.id, version, run.id)
                run_id = run.id
        log.info(
            "drift checked: data %.3f, concept %s over %d actual prices",
            data.score,
            "n/a" if concept is None else f"{concept:.2f}",
            live.n,
            extra={"event": "drift_check"},
        )
        if run_id is not None:
            log.warning(
                "retrain queued because of %s",
                "; ".join(reasons),
                extra={"event": "drift_retrain", "run": run_id},
            )
        return DriftResult(slug, version, data, live, bt, run_id)


# Recommendations per company from the last monitoring pass of this process: (products, waits).
_recommendations: dict[str, tuple[int, int]] = {}


def count_recommendations(engine: Engine, settings: Settings, slug: str) -> tuple[int, int] | None:
    """Advice over the stored forecasts of the current model, with the policy it learned, as
    the Recommendations page gives it: (products, of which wait)."""
    from procurement.buying import advice_policy
    from procurement.db import forecasts
    from procurement.recommend import recommend

    version = store.current_version(settings.model_dir, slug)
    if version is None:
        return None
    with open_session(engine) as s:
        ten = catalog.get_tenant(s, slug)
        fc = None if ten is None else forecasts.load_forecast(s, ten.id, version)
    if fc is None:
        return None
    # the model the app serves (loaded once per process and version); with the settings'
    # thresholds the gauge had counted 70%-sure waits where the pages advised on 55%
    model = store.load_shared(settings.model_dir, slug, version).model
    policy = advice_policy(model, settings.min_confidence, settings.min_saving_pct)
    recs = recommend(fc, policy)
    n, waits = len(recs), int((~recs["buy_now"].astype(bool)).sum())
    _recommendations[slug] = (n, waits)
    return n, waits


def monitor_company(engine: Engine, settings: Settings, slug: str) -> None:
    with log_context(company=slug):
        try:
            check_drift(engine, settings, slug)
        except Exception:
            log.warning("drift check failed", exc_info=True)
        try:
            count_recommendations(engine, settings, slug)
        except Exception:
            log.warning("could not count recommendations", exc_info=True)


def monitor_all(engine: Engine, settings: Settings) -> None:
    with open_session(engine) as s:
        slugs = [slug for _, slug in mdb.tenants(s)]
    for slug in slugs:
        monitor_company(engine, settings, slug)


# --- Prometheus ------------------------------------------------------------------------------


def _source_label(kind: str, source: str) -> str:
    # supplier APIs and web pages by name; files by kind only (every file name would be a series)
    return source if kind in ("api", "web") else f"file:{kind}"


class Collector:
    """Reads the metrics from the database and the model files at every scrape."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    def describe(self) -> list[Any]:
        return []  # no metrics at registration time: that would query the database

    def collect(self) -> Iterator[Any]:
        try:
            yield from self._collect()
            up = 1.0
        except Exception:
            log.warning("metrics collection failed", exc_info=True)
            up = 0.0
        g = GaugeMetricFamily("procurement_metrics_up", "1 if the last collection read everything")
        g.add_metric([], up)
        yield g

    def _collect(self) -> Iterator[Any]:
        now = runs.now()
        with open_session(self.engine) as s:
            tenants = [slug for _, slug in mdb.tenants(s)]
            run_counts = mdb.run_counts(s)
            durations = mdb.run_durations(s)
            queue = mdb.queue_lengths(s)
            leases = mdb.leases(s, [TRAIN_LOCK, "heartbeat:scheduler"], now)
            newest = mdb.newest_prices(s)
            ingest = mdb.ingestion(s)
            checks = mdb.latest_drift_checks(s)
            drift_retrains = mdb.drift_retrain_counts(s)
            latency = mdb.latency(s)

        c = CounterMetricFamily(
            "procurement_training_runs",
            "Training runs by final state",
            labels=["company", "status"],
        )
        for slug, status, n in run_counts:
            c.add_metric([slug, status], n)
        yield c

        h = HistogramMetricFamily(
            "procurement_training_duration_seconds", "Duration of finished runs", labels=["company"]
        )
        by_company: dict[str, list[float]] = {}
        for slug, secs in durations:
            by_company.setdefault(slug, []).append(secs)
        for slug, values in by_company.items():
            buckets = [(str(le), float(sum(v <= le for v in values))) for le in DURATION_BUCKETS]
            h.add_metric([slug], [*buckets, ("+Inf", float(len(values)))], sum(values))
        yield h

        q = GaugeMetricFamily(
            "procurement_retrain_queue_length", "Retrains waiting", labels=["company"]
        )
        for slug in tenants:
            q.add_metric([slug], queue.get(slug, 0))
        yield q

        lease = GaugeMetricFamily(
            "procurement_lease_held", "1 while the lease is held", labels=["lease"]
        )
        for name, held in leases.items():
            lease.add_metric([name], 1.0 if held else 0.0)
        yield lease

        age = GaugeMetricFamily(
            "procurement_price_age_seconds",
            "Time since the day of the company's newest price",
            labels=["company"],
        )
        for slug, day in newest.items():
            age.add_metric([slug], (now - dt.datetime.combine(day, dt.time())).total_seconds())
        yield age

        yield from self._model_metrics(tenants, now)

        rows = CounterMetricFamily(
            "procurement_ingested_rows",
            "Price rows stored by imports",
            labels=["company", "source"],
        )
        rejected = CounterMetricFamily(
            "procurement_ingest_rejected_rows",
            "Price rows refused or held back",
            labels=["company", "source"],
        )
        failures = CounterMetricFamily(
            "procurement_fetch_failures",
            "Supplier API and web page fetches that stored nothing",
            labels=["company", "source"],
        )
        agg: dict[tuple[str, str], list[int]] = {}
        for r in ingest:
            key = (r["company"], _source_label(r["kind"], r["source"]))
            a = agg.setdefault(key, [0, 0, 0])
            a[0] += r["rows"]
            a[1] += r["rejected"]
            if r["kind"] in ("api", "web") and r["status"] == "error":
                a[2] += r["runs"]
        for key, (n_rows, n_rej, n_fail) in agg.items():
            rows.add_metric(list(key), n_rows)
            rejected.add_metric(list(key), n_rej)
            if key[1].startswith("file:"):
                continue
            failures.add_metric(list(key), n_fail)
        yield rows
        yield rejected
        yield failures

        recs = GaugeMetricFamily(
            "procurement_recommendations",
            "Products with advice from the current model",
            labels=["company"],
        )
        waits = GaugeMetricFamily(
            "procurement_waits_advised",
            "Products where the advice is to wait",
            labels=["company"],
        )
        for slug, (n, w) in _recommendations.items():
            recs.add_metric([slug], n)
            waits.add_metric([slug], w)
        yield recs
        yield waits

        yield from self._drift_metrics(checks, drift_retrains)

        lat = HistogramMetricFamily(
            "procurement_latency_seconds",
            "Latency of the app's page renders and of predictions",
            labels=["operation", "target"],
        )
        for name, vals in latency.items():
            operation, _, target = name.partition("|")
            buckets = [(repr(le), vals.get(repr(le), 0.0)) for le in LATENCY_BUCKETS]
            lat.add_metric(
                [operation, target],
                [*buckets, ("+Inf", vals.get("+Inf", 0.0))],
                vals.get("sum", 0.0),
            )
        yield lat

    def _model_metrics(self, tenants: list[str], now: dt.datetime) -> Iterator[Any]:
        labels = ["company"]
        info = GaugeMetricFamily(
            "procurement_model_info", "The current model version", labels=["company", "version"]
        )
        age = GaugeMetricFamily(
            "procurement_model_age_seconds",
            "Time since the current model was trained",
            labels=labels,
        )
        n_rows = GaugeMetricFamily(
            "procurement_model_trained_rows",
            "Price rows the current model was trained on",
            labels=labels,
        )
        n_products = GaugeMetricFamily(
            "procurement_model_trained_products", "Products in the current model", labels=labels
        )
        mase = GaugeMetricFamily(
            "procurement_model_backtest_mase", "Backtest MASE of the current model", labels=labels
        )
        naive = GaugeMetricFamily(
            "procurement_model_backtest_naive_mase",
            "Backtest MASE of the naive forecast, same windows",
            labels=labels,
        )
        coverage = GaugeMetricFamily(
            "procurement_model_backtest_coverage_80",
            "Share of backtest prices inside the 80% interval",
            labels=labels,
        )
        for slug in tenants:
            meta = store.read_metadata(self.settings.model_dir, slug)
            if meta is None:
                continue
            info.add_metric([slug, str(meta.get("version"))], 1.0)
            trained = meta.get("trained_at")
            if trained:
                t = dt.datetime.fromisoformat(str(trained)).astimezone(dt.UTC).replace(tzinfo=None)
                age.add_metric([slug], (now - t).total_seconds())
            for fam, key in ((n_rows, "n_rows"), (n_products, "n_products")):
                if isinstance(meta.get(key), int | float):
                    fam.add_metric([slug], float(meta[key]))
            m = meta.get("metrics") or {}
            for fam, value in (
                (mase, (m.get("model") or {}).get("mase")),
                (naive, (m.get("naive") or {}).get("mase")),
                (coverage, m.get("coverage_80")),
            ):
                if isinstance(value, int | float) and math.isfinite(value):
                    fam.add_metric([slug], float(value))
        yield from (info, age, n_rows, n_products, mase, naive, coverage)

    def _drift_metrics(
        self, checks: list[tuple[str, Any]], retrains: dict[str, int]
    ) -> Iterator[Any]:
        labels = ["company"]
        data = GaugeMetricFamily(
            "procurement_drift_data_psi",
            "Largest feature PSI, training window vs latest weeks",
            labels=labels,
        )
        feature = GaugeMetricFamily(
            "procurement_drift_feature_psi",
            "PSI of each monitored feature",
            labels=["company", "feature"],
        )
        concept = GaugeMetricFamily(
            "procurement_drift_concept_ratio", "Live error over the backtest error", labels=labels
        )
        live = GaugeMetricFamily(
            "procurement_model_live_mase",
            "MASE of stored forecasts on arrived prices",
            labels=labels,
        )
        live_cov = GaugeMetricFamily(
            "procurement_model_live_coverage_80",
            "Share of arrived prices inside the stored 80% interval",
            labels=labels,
        )
        actuals = GaugeMetricFamily(
            "procurement_model_live_actuals",
            "Stored forecasts with an arrived price",
            labels=labels,
        )
        checked = GaugeMetricFamily(
            "procurement_drift_checked_timestamp_seconds",
            "When drift was last checked",
            labels=labels,
        )
        for slug, c in checks:
            checked.add_metric([slug], c.computed_at.replace(tzinfo=dt.UTC).timestamp())
            actuals.add_metric([slug], float(c.n_actuals))
            for fam, value in (
                (data, c.data_drift),
                (concept, c.concept_drift),
                (live, c.live_mase),
                (live_cov, c.live_coverage_80),
            ):
                if value is not None:
                    fam.add_metric([slug], float(value))
            for name, value in (c.features or {}).items():
                feature.add_metric([slug, name], float(value))
        retrain = CounterMetricFamily(
            "procurement_drift_retrains", "Retrains queued because of drift", labels=labels
        )
        for slug, n in retrains.items():
            retrain.add_metric([slug], n)
        yield from (data, feature, concept, live, live_cov, actuals, checked, retrain)


def registry(engine: Engine, settings: Settings) -> CollectorRegistry:
    """A registry with the procurement metrics only (no process or Python runtime metrics)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(engine, settings))
    return reg


def serve(engine: Engine, settings: Settings, port: int | None = None) -> Any:
    """Serve ``/metrics`` in a daemon thread; returns the server."""
    server, _thread = start_http_server(
        settings.metrics_port if port is None else port,
        addr=settings.metrics_addr,
        registry=registry(engine, settings),
    )
    return server
