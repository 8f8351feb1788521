"""The sidecar as a real process against SQLite and MariaDB: queue, one trainer, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from procurement import actions, demo, retrain
from procurement.auth import Principal
from procurement.db import open_session, runs
from procurement.db.models import ModelRun, PriceForecast
from procurement.forecast import store
from procurement.training import train_global_lgbm_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def seeded(db, settings):
    with open_session(db) as s, s.begin():
        demo.seed_synthetic(s, "demo", n_products=10, n_days=200)
    with open_session(db) as s, s.begin():
        first = train_global_lgbm_model(s, "demo", settings)
    return first.version


def _env(db, settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": db.url.render_as_string(hide_password=False),
        "MODEL_DIR": str(settings.model_dir),
        "LGBM_N_ESTIMATORS": str(settings.lgbm_n_estimators),
        "TRAIN_MAX_DAYS": str(settings.train_max_days),
        "SCHEDULER_POLL_SECONDS": "0.5",
        **extra,
    }


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "procurement.scheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(cond, timeout: float = 90, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _run(db, run_id: int) -> ModelRun:
    with open_session(db) as s:
        return s.get(ModelRun, run_id)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_request_from_app_is_picked_up_and_publishes_new_version(db, settings, seeded) -> None:
    proc = _start(_env(db, settings))
    try:
        _wait(lambda: retrain.scheduler_alive(db), 60, "scheduler heartbeat")
        t0 = time.time()
        run_id, created = retrain.request(db, "demo", Principal("buyer@test", "buyer", None))
        assert created
        run = _wait(
            lambda: (r := _run(db, run_id)).status in ("done", "failed") and r, 120, "run to finish"
        )
        elapsed = time.time() - t0
        assert run.status == "done", run.message
        # the version is made current right after the run's row is committed
        _wait(
            lambda: store.current_version(settings.model_dir, "demo") == run.version,
            30,
            "the new version to be published",
        )
        assert run.version != seeded

        def stored() -> int:
            with open_session(db) as s:
                q = select(func.count()).select_from(PriceForecast)
                return s.scalar(q.where(PriceForecast.version == run.version))

        assert _wait(stored, 30, "stored forecasts") == 10 * 14  # refreshed for the pages
        print(f"button press to new model in use: {elapsed:.1f}s")
    finally:
        _stop(proc)


def test_ten_concurrent_requests_give_one_run(db, seeded) -> None:
    with ThreadPoolExecutor(10) as pool:
        results = list(
            pool.map(
                lambda i: retrain.request(db, "demo", Principal(f"user{i}", "buyer", None)),
                range(10),
            )
        )
    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with open_session(db) as s:
        assert (
            s.scalar(select(func.count()).select_from(ModelRun).where(ModelRun.status == "queued"))
            == 1
        )


def test_requests_while_training_queue_exactly_one_more(db, seeded) -> None:
    first, _ = retrain.request(db, "demo", Principal("a", "buyer", None))
    with open_session(db) as s, s.begin():
        runs.claim_next(s)  # now running
    ids = {retrain.request(db, "demo", Principal(f"u{i}", "buyer", None))[0] for i in range(10)}
    assert len(ids) == 1 and first not in ids


def test_only_one_trainer_holds_the_lease(db) -> None:
    with open_session(db) as s, s.begin():
        assert runs.acquire_lock(s, "training", "host:1", 60)
    with open_session(db) as s, s.begin():
        assert not runs.acquire_lock(s, "training", "host:2", 60)
    with open_session(db) as s, s.begin():
        assert runs.acquire_lock(s, "training", "host:1", 60)  # re-entrant for the holder


def test_expired_lease_can_be_taken_over(db) -> None:
    with open_session(db) as s, s.begin():
        assert runs.acquire_lock(s, "training", "host:1", -1)  # already expired
    with open_session(db) as s, s.begin():
        assert runs.acquire_lock(s, "training", "host:2", 60)


def test_kill_9_mid_training_keeps_old_model_and_next_start_finishes(db, settings, seeded) -> None:
    # a bigger model so the kill lands while LightGBM is training
    env = _env(db, settings, LGBM_N_ESTIMATORS="3000", LGBM_LEARNING_RATE="0.01")
    run_id, _ = retrain.request(db, "demo", Principal("buyer", "buyer", None))
    proc = _start(env)
    try:
        _wait(lambda: _run(db, run_id).status == "running", 60, "training to start")
        _wait(lambda: "training LightGBM" in (_run(db, run_id).message or ""), 60, "the fit")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        _stop(proc)
    assert _run(db, run_id).status == "running"  # the crash left it so
    assert store.current_version(settings.model_dir, "demo") == seeded
    assert len(store.load_version(settings.model_dir, "demo").model.predict()) == 10 * 14
    # no half-written version is visible: every version folder loads and passes its checksum
    versions = [
        d.name
        for d in (settings.model_dir / "demo").iterdir()
        if d.is_dir() and not d.name.startswith(".")
    ]
    assert versions == [seeded]
    for v in versions:
        store.load_version(settings.model_dir, "demo", v)

    # normal size again, so it finishes quickly; promotion is not what this test is about
    proc = _start(_env(db, settings, PROMOTE_MARGIN="100"))
    try:
        run = _wait(
            lambda: (r := _run(db, run_id)).status in ("done", "failed") and r, 120, "recovery"
        )
        assert run.status == "done", run.message
        # the version is made current right after the run's row is committed
        _wait(
            lambda: store.current_version(settings.model_dir, "demo") == run.version,
            30,
            "the new version to be published",
        )
        assert run.version != seeded
    finally:
        _stop(proc)


def test_corrupt_version_is_refused_and_rollback_works(db, settings, seeded) -> None:
    with open_session(db) as s, s.begin():
        newer = train_global_lgbm_model(s, "demo", settings).version
    assert store.current_version(settings.model_dir, "demo") == newer
    store.set_current(settings.model_dir, "demo", seeded)  # roll back
    assert store.current_version(settings.model_dir, "demo") == seeded
    (settings.model_dir / "demo" / newer / store.MODEL_FILE).write_bytes(b"\x80garbage")
    with pytest.raises(store.ModelStoreError):
        store.set_current(settings.model_dir, "demo", newer)
    assert store.current_version(settings.model_dir, "demo") == seeded
    assert len(store.load_version(settings.model_dir, "demo").model.predict()) > 0


def test_worse_model_is_kept_but_not_promoted(db, settings, seeded) -> None:
    bad = settings.model_copy(update={"lgbm_n_estimators": 10, "promote_margin": -0.99})
    with open_session(db) as s, s.begin():
        res = train_global_lgbm_model(s, "demo", bad)
    assert store.current_version(settings.model_dir, "demo") == seeded
    assert res.metadata["promotion"].startswith("kept, not promoted")
    assert res.version in {m["version"] for m in store.list_versions(settings.model_dir, "demo")}


def test_daily_refresh_queues_a_retrain_when_newer_prices_arrive(
    db, settings, seeded, tmp_path, monkeypatch
) -> None:
    import procurement.scheduler as sched
    from procurement.config import get_settings
    from procurement.db import get_engine

    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("MODEL_DIR", str(settings.model_dir))
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        sched.refresh_all()  # nothing new: no run queued
        with open_session(db) as s:
            assert (
                s.scalar(
                    select(func.count()).select_from(ModelRun).where(ModelRun.status == "queued")
                )
                == 0
            )
        meta = store.read_metadata(settings.model_dir, "demo")
        f = tmp_path / "new.csv"
        f.write_text(f"sku,date,price\nSKU-00001,{pd_next_day(meta['data_end'])},9.99\n")
        with open_session(db) as s:
            actions.import_price_file(Principal.system(), session=s, tenant="demo", path=f)
        sched.refresh_all()
        with open_session(db) as s:
            assert (
                s.scalar(
                    select(func.count()).select_from(ModelRun).where(ModelRun.status == "queued")
                )
                == 1
            )
    finally:
        get_settings.cache_clear()
        get_engine.cache_clear()


def pd_next_day(day: str) -> str:
    import datetime as dt

    return str(dt.date.fromisoformat(day) + dt.timedelta(days=1))


def test_two_in_app_trainings_in_one_process_do_not_share_the_lease(db, settings, seeded) -> None:
    """A second browser session's training, in the same process, waits for the lease; it does
    not take it over as 'the same holder' and free it while the first one still trains."""
    retrain.request(db, "demo", Principal("buyer", "buyer", None))
    seen: dict[str, object] = {}

    def progress(frac: float, msg: str) -> None:
        if "second" in seen or frac < 0.1:
            return
        with open_session(db) as s:
            seen["first"] = runs.lock_info(s, retrain.TRAIN_LOCK).holder
        seen["second"] = retrain.process_next(db, settings)  # another session clicks Retrain
        with open_session(db) as s:
            lock = runs.lock_info(s, retrain.TRAIN_LOCK)
            seen["after"] = lock.holder if lock is not None else None

    assert retrain.process_next(db, settings, progress=progress) is not None
    assert seen["second"] is None
    assert seen["after"] == seen["first"]  # the first training still holds its lease
    with open_session(db) as s:
        assert runs.lock_info(s, retrain.TRAIN_LOCK) is None  # released at the end


def test_lease_of_a_dead_predecessor_with_our_pid_is_freed_and_its_run_requeued(db, seeded) -> None:
    """In a container the restarted scheduler has the same host name and PID 1 again; the old
    holder is told apart by its token, so the interrupted run is requeued at once."""
    run_id, _ = retrain.request(db, "demo", Principal("buyer", "buyer", None))
    host, pid, _ = retrain.holder_id().split(":")
    with open_session(db) as s, s.begin():
        runs.claim_next(s)
        assert runs.acquire_lock(s, retrain.TRAIN_LOCK, f"{host}:{pid}:0123456789ab", 600)
    assert retrain.recover(db) == 1
    assert _run(db, run_id).status == "queued"
    with open_session(db) as s:
        assert runs.lock_info(s, retrain.TRAIN_LOCK) is None


def test_lease_of_this_process_is_not_broken_by_recovery(db, seeded) -> None:
    retrain.request(db, "demo", Principal("buyer", "buyer", None))
    with open_session(db) as s, s.begin():
        runs.claim_next(s)
        assert runs.acquire_lock(s, retrain.TRAIN_LOCK, retrain.new_holder(), 600)
    assert retrain.recover(db) == 0
    with open_session(db) as s:
        assert runs.lock_info(s, retrain.TRAIN_LOCK) is not None


def test_every_training_gets_its_own_holder() -> None:
    assert retrain.new_holder() != retrain.new_holder()
    assert retrain.new_holder().startswith(retrain.holder_id() + ".")


def test_a_retrain_stores_the_forecast_its_check_computed_unless_newer_prices_came(
    db, settings, seeded, monkeypatch
) -> None:
    """The save's check predicts every product; the job stores that forecast instead of
    predicting again, but a price that arrived meanwhile is forecast from."""
    import pandas as pd

    from procurement.db import catalog, forecasts, history
    from procurement.forecast.model import PriceModel

    calls: list[object] = []
    predict = PriceModel.predict

    def counted(self, *a, **k):  # type: ignore[no-untyped-def]
        calls.append(k.get("prices"))
        return predict(self, *a, **k)

    monkeypatch.setattr(PriceModel, "predict", counted)
    run_id, _ = retrain.request(db, "demo", Principal("buyer@test", "buyer", None))
    assert retrain.process_next(db, settings) == run_id
    run = _run(db, run_id)
    assert run.status == "done", run.message
    assert len(calls) == 1  # the check's, nothing more
    model = store.load_version(settings.model_dir, "demo", run.version).model
    with open_session(db) as s:
        ten = catalog.get_tenant(s, "demo")
        got = forecasts.load_forecast(s, ten.id, run.version)
    want = predict(model).sort_values(["sku", "date"], ignore_index=True)
    assert got is not None and len(got) == 10 * 14
    pd.testing.assert_series_equal(got["y_pred"], want["y_pred"], check_exact=False, rtol=1e-9)

    # a price after the model's data: the refresh forecasts from it, whatever was checked
    sku = model.products[0]
    day = (model.last_date + pd.Timedelta(days=1)).date()
    with open_session(db) as s, s.begin():
        new = pd.DataFrame({"sku": [sku], "date": [day], "price": [model.last_price[sku] * 0.5]})
        history.store_prices(s, ten.id, new)
    calls.clear()
    retrain.refresh_forecasts(db, settings, "demo", run.version, checked=want)
    assert calls and calls[0] is not None  # predicted from the newer price
    with open_session(db) as s:
        moved = forecasts.load_forecast(s, ten.id, run.version)
    assert moved is not None
    first = moved[moved["sku"] == sku]["y_pred"].iloc[0]
    assert first < want[want["sku"] == sku]["y_pred"].iloc[0]
