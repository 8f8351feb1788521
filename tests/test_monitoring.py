"""Monitoring: drift on generated data, drift-triggered retrains, the real sidecar's /metrics,
structured logs, the app's latency, and the Prometheus / Grafana files in deploy/."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import END, require_tool
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from procurement import demo, drift, monitoring, retrain
from procurement.auth import Principal
from procurement.data.importers import validate_prices
from procurement.data.synthetic import generate
from procurement.db import catalog, history, open_session, runs
from procurement.db import monitoring as mdb
from procurement.db.models import ImportRun, ModelRun
from procurement.forecast import store
from procurement.training import train_global_lgbm_model

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _prices(data) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    p = data.prices[["sku", "date", "price"]].copy()
    p["date"] = pd.to_datetime(p["date"])
    return p


def _shift_last_days(prices: pd.DataFrame, days: int, factor: float) -> pd.DataFrame:
    out = prices.copy()
    last = out["date"].max()
    out.loc[out["date"] > last - pd.Timedelta(days=days), "price"] *= factor
    return out


# --- pure functions --------------------------------------------------------------------------


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert drift.psi(ref, rng.normal(size=2000)) < 0.02
    assert drift.psi(ref, rng.normal(loc=1.0, size=2000)) > 0.5
    assert np.isnan(drift.psi(ref, []))


def test_data_drift_is_near_zero_on_unchanged_data_and_high_after_a_price_level_shift() -> None:
    """Both from the generator: its own latest four weeks against the weeks before, and the same
    data with the latest four weeks' prices 30% higher."""
    data = generate(n_products=60, n_days=400, seed=2, end=END)
    prices, sales = _prices(data), data.prices[["sku", "date", "quantity"]]
    start = prices["date"].min().date()

    unchanged = drift.data_drift(drift.features(prices, data.drivers, sales), start, END, 28)
    assert unchanged.score < 0.1, unchanged.psi
    assert set(unchanged.psi) == {
        "price_change",
        "price_vs_90d",
        "volatility_14d",
        "driver_change",
        "sales_vs_90d",
    }
    assert unchanged.recent == (END - dt.timedelta(days=27), END)

    shifted_prices = _shift_last_days(prices, 28, 1.3)
    shifted = drift.data_drift(drift.features(shifted_prices, data.drivers, sales), start, END, 28)
    assert shifted.score > 2.0, shifted.psi
    assert max(shifted.psi, key=shifted.psi.get) == "price_vs_90d"  # type: ignore[arg-type]
    assert shifted.psi["driver_change"] == pytest.approx(unchanged.psi["driver_change"])


def test_live_error_of_exact_forecasts_is_zero_and_grows_with_the_miss() -> None:
    fc = pd.DataFrame(
        {
            "sku": ["A", "A", "B"],
            "date": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01"]),
            "y_pred": [10.0, 10.0, 100.0],
            "lo_80": [9.0, 9.0, 90.0],
            "hi_80": [11.0, 11.0, 110.0],
        }
    )
    scale = pd.Series({"A": 1.0, "B": 10.0})
    exact = fc.rename(columns={"y_pred": "price"})[["sku", "date", "price"]]
    assert drift.live_error(fc, exact, scale) == drift.LiveError(0.0, 1.0, 3)
    missed = exact.assign(price=[12.0, 13.0, 120.0])  # A off by 2 and 3 scales, B by 2
    live = drift.live_error(fc, missed, scale)
    assert live.mase == pytest.approx(((2 + 3) / 2 + 2) / 2)
    assert live.coverage_80 == 0.0 and live.n == 3
    assert drift.live_error(fc, exact.iloc[0:0], scale).n == 0


def test_json_logs_carry_company_run_and_version(capsys) -> None:  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monitoring.configure_logging("json")
        with monitoring.log_context(company="demo", run=7, version="v1"):
            logging.getLogger("procurement.test").info("trained %d", 3, extra={"event": "x"})
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert line["message"] == "trained 3"
    assert (line["company"], line["run"], line["version"], line["event"]) == ("demo", 7, "v1", "x")
    assert line["level"] == "info" and line["logger"] == "procurement.test"


# --- drift against the database --------------------------------------------------------------


def _store(s, tenant: str, data, until: dt.date) -> None:  # type: ignore[no-untyped-def]
    """Store the generator's prices and drivers up to ``until``."""
    ten = catalog.get_or_create_tenant(s, tenant, None)
    p = data.prices[pd.to_datetime(data.prices["date"]) <= pd.Timestamp(until)]
    history.store_prices(s, ten.id, validate_prices(p, source="test"))
    dr = data.drivers[pd.to_datetime(data.drivers["date"]) <= pd.Timestamp(until)]
    history.store_drivers(s, ten.id, dr)


def _store_range(s, tenant: str, data, after: dt.date, factor: float) -> None:  # type: ignore[no-untyped-def]
    """Store (or overwrite) the prices and drivers after ``after``, prices times ``factor``."""
    ten = catalog.get_tenant(s, tenant)
    p = data.prices[pd.to_datetime(data.prices["date"]) > pd.Timestamp(after)].copy()
    p["price"] = (p["price"] * factor).round(2)
    history.store_prices(s, ten.id, validate_prices(p, source="test"))
    history.store_drivers(
        s, ten.id, data.drivers[pd.to_datetime(data.drivers["date"]) > pd.Timestamp(after)]
    )


@pytest.fixture(scope="module")
def gen_data():  # type: ignore[no-untyped-def]
    return generate(n_products=12, n_days=300, seed=5, end=END)


def _trained_until(db, settings, data, until: dt.date) -> str:  # type: ignore[no-untyped-def]
    with open_session(db) as s, s.begin():
        _store(s, "demo", data, until)
    with open_session(db) as s, s.begin():
        version = train_global_lgbm_model(s, "demo", settings).version
    retrain.refresh_forecasts(db, settings, "demo")
    return version


def test_concept_drift_rises_when_actual_prices_leave_the_forecast(db, settings, gen_data) -> None:
    cut = END - dt.timedelta(days=14)
    version = _trained_until(db, settings, gen_data, cut)
    quiet = settings.model_copy(update={"drift_psi_threshold": 1e9})  # concept drift only

    before = monitoring.check_drift(db, quiet, "demo")
    assert before is not None and before.version == version
    assert before.live.n == 0 and before.concept is None

    with open_session(db) as s, s.begin():
        _store_range(s, "demo", gen_data, cut, 1.0)  # the prices the generator went on with
    as_forecast = monitoring.check_drift(db, quiet, "demo")
    assert as_forecast is not None and as_forecast.live.n == 12 * 14
    assert as_forecast.concept is not None and as_forecast.concept < 3

    with open_session(db) as s, s.begin():
        _store_range(s, "demo", gen_data, cut, 1.25)  # the same days, 25% higher
    left = monitoring.check_drift(db, quiet, "demo")
    assert left is not None and left.concept is not None
    assert left.concept > 3 * as_forecast.concept
    assert left.concept > quiet.concept_drift_threshold
    assert left.live.coverage_80 < as_forecast.live.coverage_80
    print(
        f"concept drift: as forecast {as_forecast.concept:.2f} "
        f"(live MASE {as_forecast.live.mase:.2f} vs backtest {as_forecast.backtest_mase:.2f}), "
        f"25% off {left.concept:.2f}"
    )
    with open_session(db) as s:
        hist = mdb.drift_history(s, catalog.get_tenant(s, "demo").id)
    assert list(hist["n_actuals"]) == [0, 168, 168]
    assert hist["concept_drift"].iloc[-1] == pytest.approx(left.concept)


def test_drift_triggered_retrain_happens_once_per_model_version(db, settings, gen_data) -> None:
    cut = END - dt.timedelta(days=28)
    version = _trained_until(db, settings, gen_data, cut)
    first = monitoring.check_drift(db, settings, "demo")
    assert first is not None and first.retrain_run is None  # nothing new yet
    assert first.data.score < settings.drift_psi_threshold

    with open_session(db) as s, s.begin():
        _store_range(s, "demo", gen_data, cut, 1.3)  # four weeks at a 30% higher level
    drifted = monitoring.check_drift(db, settings, "demo")
    assert drifted is not None and drifted.data.score > settings.drift_psi_threshold
    assert drifted.retrain_run is not None
    with open_session(db) as s, s.begin():  # the trainer takes it; the queue is empty again
        run = runs.claim_next(s)
        assert run is not None and run.id == drifted.retrain_run
        run.status, run.finished_at = runs.FAILED, runs.now()
    again = monitoring.check_drift(db, settings, "demo")
    assert again is not None and again.retrain_run is None and again.version == version
    with open_session(db) as s:
        assert s.scalar(select(func.count()).select_from(ModelRun)) == 2  # training + one retrain
        (only,) = mdb.drift_retrains(s)
    assert only.version == version and only.run_id == drifted.retrain_run
    assert "data drift" in only.reason and "price_vs_90d" in only.reason

    # a model trained on the shifted weeks still sees their PSI, but asks for no more retrains
    with open_session(db) as s, s.begin():
        always = settings.model_copy(update={"promote_margin": 100.0})  # made current
        newer = train_global_lgbm_model(s, "demo", always).version
    after = monitoring.check_drift(db, settings, "demo")
    assert after is not None and after.version == newer
    assert after.data.score > settings.drift_psi_threshold and after.retrain_run is None


# --- the metrics endpoint --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def _value(samples, name: str, **labels: str) -> float | None:  # type: ignore[no-untyped-def]
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_endpoint_of_the_real_sidecar_after_a_training_run(db, settings, tmp_path) -> None:
    with open_session(db) as s, s.begin():
        demo.seed_synthetic(s, "demo", n_products=10, n_days=200)
    monitoring.recorder.observe("page_render", "Overview", 0.3, db)  # as the app does
    monitoring.recorder.flush()
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db.url.render_as_string(hide_password=False),
        "MODEL_DIR": str(settings.model_dir),
        "LGBM_N_ESTIMATORS": str(settings.lgbm_n_estimators),
        "TRAIN_MAX_DAYS": str(settings.train_max_days),
        "SCHEDULER_POLL_SECONDS": "0.5",
        "METRICS_PORT": str(port),
        "METRICS_ADDR": "127.0.0.1",
        "LOG_FORMAT": "json",
    }
    log_file = tmp_path / "scheduler.log"
    with log_file.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "procurement.scheduler"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        run_id, _ = retrain.request(db, "demo", Principal("buyer", "buyer", None))
        deadline = time.time() + 180
        samples: dict = {}
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
                samples = _samples(text)
            except OSError:
                text = ""
            # the monitor checks drift, then counts the advice: a check that ran just before
            # the new model was current has no drift yet, and the next one has it
            if (
                _value(samples, "procurement_training_runs_total", company="demo", status="done")
                and _value(samples, "procurement_recommendations", company="demo")
                and _value(samples, "procurement_drift_data_psi", company="demo") is not None
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no metrics after the run; log:\n{log_file.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    def v(name: str, **labels: str) -> float:
        got = _value(samples, name, **labels)
        assert got is not None, (name, labels, sorted({k[0] for k in samples}))
        return got

    assert all(name.startswith("procurement_") for name, _ in samples)
    assert v("procurement_training_runs_total", company="demo", status="done") == 1
    assert v("procurement_training_duration_seconds_count", company="demo") == 1
    assert 0 < v("procurement_training_duration_seconds_sum", company="demo") < 180
    assert v("procurement_model_trained_products", company="demo") == 10
    assert v("procurement_model_trained_rows", company="demo") == 10 * 200
    assert 0 < v("procurement_model_backtest_mase", company="demo") < 5
    assert 0 < v("procurement_model_backtest_naive_mase", company="demo") < 5
    # the training backtest may not measure coverage (the model's metadata then has no key)
    coverage = (store.read_metadata(settings.model_dir, "demo") or {})["metrics"].get("coverage_80")
    got = _value(samples, "procurement_model_backtest_coverage_80", company="demo")
    assert got == (None if coverage is None else pytest.approx(coverage))
    assert 0 <= v("procurement_model_age_seconds", company="demo") < 600
    # prices end on END, the pinned demo day: their age is whatever the calendar says, but > 0
    assert v("procurement_price_age_seconds", company="demo") > 0
    assert v("procurement_retrain_queue_length", company="demo") == 0
    assert v("procurement_lease_held", lease="training") in (0, 1)
    assert v("procurement_recommendations", company="demo") == 10
    assert 0 <= v("procurement_waits_advised", company="demo") <= 10
    assert 0 <= v("procurement_drift_data_psi", company="demo") < 0.5  # unchanged data
    assert v("procurement_model_live_actuals", company="demo") == 0
    assert v("procurement_ingested_rows_total", company="demo", source="file:prices") == 2000
    assert v("procurement_latency_seconds_count", operation="page_render", target="Overview") == 1
    assert (
        v(
            "procurement_latency_seconds_bucket",
            operation="page_render",
            target="Overview",
            le="0.25",
        )
        == 0
    )
    assert (
        v(
            "procurement_latency_seconds_bucket",
            operation="page_render",
            target="Overview",
            le="0.5",
        )
        == 1
    )
    assert v("procurement_metrics_up") == 1

    events = [
        json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")
    ]
    finished = [e for e in events if e.get("event") == "training_finished"]
    assert finished and finished[0]["company"] == "demo" and finished[0]["run"] == run_id
    assert finished[0]["version"]
    assert any(e.get("event") == "drift_check" and e.get("version") for e in events)


# --- deploy/: Prometheus, alert rules, Grafana -----------------------------------------------


def _promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=["config", "rules", "rule-unit-tests"],
)
def test_promtool_accepts_the_prometheus_files(args: tuple[str, ...]) -> None:
    r = subprocess.run(
        [_promtool(), *args],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_scrapes_the_sidecar_on_the_metrics_port() -> None:
    import yaml

    from procurement.config import Settings

    conf = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = conf["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"scheduler:{Settings().metrics_port}"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["scheduler"]["environment"]["METRICS_PORT"] == str(Settings().metrics_port)
    assert {"prometheus", "grafana"} <= set(compose)


@pytest.fixture
def exported_names(db, settings, gen_data) -> set[str]:  # type: ignore[no-untyped-def]
    """Every sample name the collector exports when all kinds of data exist: a model, stored
    forecasts, prices that arrived after it, a drift check, imports, a failed fetch, a queued
    run, a drift retrain, app latency."""
    cut = END - dt.timedelta(days=7)
    _trained_until(db, settings, gen_data, cut)
    with open_session(db) as s, s.begin():
        _store_range(s, "demo", gen_data, cut, 1.0)
        ten = catalog.get_tenant(s, "demo")
        history.record_import(s, ten.id, "prices.csv", None)
        s.add(ImportRun(tenant_id=ten.id, source="api:acme", kind="api", status="error"))
        runs.request_retrain(s, ten.id, "test")
        mdb.claim_drift_retrain(s, ten.id, "v0", "test")
    monitoring.check_drift(db, settings, "demo")
    monitoring.count_recommendations(db, settings, "demo")
    monitoring.recorder.observe("page_render", "Overview", 0.2, db)
    monitoring.recorder.flush()
    text = generate_latest(monitoring.registry(db, settings)).decode()
    return {smp.name for fam in text_string_to_metric_families(text) for smp in fam.samples}


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\bprocurement_[a-z0-9_]+", text))


def _family(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total)$", "", name)


def test_exported_metrics_are_the_declared_ones(exported_names) -> None:
    assert exported_names <= monitoring.sample_names(), exported_names - monitoring.sample_names()
    missing = set(monitoring.METRIC_FAMILIES) - {_family(n) for n in exported_names}
    # coverage only when the model's backtest measured it (the training backtest may not)
    assert missing <= {"procurement_model_backtest_coverage_80"}, missing


def test_grafana_dashboard_and_alerts_use_only_exported_metrics() -> None:
    declared = monitoring.sample_names()
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "procurement.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = _metric_names("\n".join(exprs)) | _metric_names(json.dumps(dash["templating"]))
    assert used, "the dashboard queries no procurement metric"
    assert used <= declared, used - declared
    alerts = _metric_names((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert alerts <= declared, alerts - declared
    # and every family the code exports is on the dashboard
    unshown = set(monitoring.METRIC_FAMILIES) - {_family(n) for n in used}
    assert unshown <= {"procurement_drift_checked_timestamp_seconds"}, unshown


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    import yaml

    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "procurement.json").read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    prov = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "procurement.yml").read_text()
    )
    mounted = {v.split(":")[1]: v.split(":")[0] for v in compose["volumes"]}
    assert mounted[prov["providers"][0]["options"]["path"]] == "./deploy/grafana/dashboards"


# --- the Model health page -------------------------------------------------------------------


def test_model_health_page_shows_drift_over_time(app_env) -> None:
    from streamlit.testing.v1 import AppTest
    from test_app import login_as

    from procurement.config import get_settings
    from procurement.db import make_engine

    eng = make_engine(app_env["DATABASE_URL"])
    quiet = get_settings().model_copy(
        update={"drift_psi_threshold": 1e9, "concept_drift_threshold": 1e9}
    )  # the shared app database must not get a drift retrain queued
    for _ in range(2):
        assert monitoring.check_drift(eng, quiet, "demo") is not None
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    login_as(at, "buyer")
    at.run()
    at.switch_page("pages/health.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title[0].value == "Model health"
    labels = [m.label for m in at.metric]
    assert "Data drift (largest PSI)" in labels and "Backtest MASE" in labels
    assert not at.error


def test_the_waits_gauge_counts_with_the_policy_the_model_learned(db, settings, gen_data) -> None:  # type: ignore[no-untyped-def]
    """The gauge of waiting products agrees with the Recommendations page, which advises with
    the model's learned policy, not with the settings' thresholds."""
    from procurement.db import forecasts
    from procurement.recommend import Policy, recommend

    version = _trained_until(db, settings, gen_data, END)
    model = store.load_shared(settings.model_dir, "demo", version).model
    learned = model.policy
    eager = Policy(0.0, -100.0)  # waits wherever any later day is forecast cheaper
    with open_session(db) as s:
        fc = forecasts.load_forecast(s, catalog.get_tenant(s, "demo").id, version)
    waits = int((~recommend(fc, eager)["buy_now"].astype(bool)).sum())
    assert waits > 0
    try:
        # a model that learned never to wait, under settings that would wait on anything
        model.policy = Policy(1.0, 100.0)
        loose = settings.model_copy(update={"min_confidence": 0.0, "min_saving_pct": -100.0})
        assert monitoring.count_recommendations(db, loose, "demo") == (len(fc["sku"].unique()), 0)
        # and one that learned to wait on anything, under settings that never would
        model.policy = eager
        strict = settings.model_copy(update={"min_confidence": 1.0, "min_saving_pct": 100.0})
        assert monitoring.count_recommendations(db, strict, "demo") == (
            len(fc["sku"].unique()),
            waits,
        )
    finally:
        model.policy = learned
