"""End-to-end benchmark (issue 17): for N products x 730 days, the time and peak memory of each
step of the library beside mlforecast alone and statsforecast on the same rows, one table,
written to ``benchmarks/results.md`` with the machine and its load.

Steps: seed (SQLite; MariaDB when reachable), database read (SQLite, MariaDB), the full retrain
split by its progress messages (features, calibration backtest, change model, level model, save),
predict all products, advice for all; baselines: mlforecast alone (the same LightGBM settings,
lags and rolling features on all rows, in memory, no drivers or calibration), mlforecast alone
doing the same work (the retrain's two forecasters on the same number of sampled rows and their
``cross_validation`` on the same 500 products, with the plain API), statsforecast
SeasonalNaive(7) on all series and AutoETS on a sample of series, scaled up and marked so.
Where the retrain samples rows (more than ``ModelParams.max_train_rows``), a holdout of the last
14 days compares the MASE of the sampled and the full fit on the same data.

Each step runs in a fresh subprocess, so its peak memory (max RSS) is its own.

    python scripts/benchmark.py --products 1000 --products 10000 [--keep-db DIR] [--no-mariadb]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 730
END = dt.date(2026, 6, 30)
HORIZON = 14
ETS_SAMPLE = 50
MARIADB_ROOT = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(url: str):  # type: ignore[no-untyped-def]
    from procurement.db import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    return engine


def phase_seed(url: str, products: str) -> dict:
    from procurement import demo
    from procurement.db import open_session

    engine = _engine(url)
    t = time.perf_counter()
    with open_session(engine) as s, s.begin():
        demo.seed_synthetic(s, "bench", int(products), DAYS, end=END)
    return {"seconds": time.perf_counter() - t}


def phase_read(url: str) -> dict:
    from procurement.db import catalog, make_engine, open_session
    from procurement.training import load_training_data

    engine = make_engine(url)
    t = time.perf_counter()
    with open_session(engine) as s:
        data = load_training_data(s, catalog.get_tenant(s, "bench").id, 730)
    return {"seconds": time.perf_counter() - t, "rows": len(data.prices)}


def phase_retrain(url: str, models: str) -> dict:
    from procurement.config import Settings
    from procurement.db import make_engine, open_session
    from procurement.training import train_global_lgbm_model

    settings = Settings(database_url=url, model_dir=Path(models))
    engine = make_engine(url)
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    last = [t0, "start"]

    def progress(frac: float, msg: str) -> None:
        now = time.perf_counter()
        steps[str(last[1])] = round(now - float(last[0]), 2)
        last[0], last[1] = now, msg.split(" on ")[0].split(" from ")[0]

    with open_session(engine) as s, s.begin():
        res = train_global_lgbm_model(s, "bench", settings, progress=progress)
    steps[str(last[1])] = round(time.perf_counter() - float(last[0]), 2)
    m = res.metadata["metrics"]
    return {
        "seconds": time.perf_counter() - t0,
        "steps": steps,
        "mase": m.get("model", {}).get("mase"),
        "naive_mase": m.get("naive", {}).get("mase"),
    }


def phase_predict(models: str, what: str) -> dict:
    from procurement.forecast import store
    from procurement.forecast.predict import predict_prices, recommendations

    model = store.load_version(Path(models), "bench").model
    t = time.perf_counter()
    out = predict_prices(model) if what == "predict" else recommendations(model)
    return {"seconds": time.perf_counter() - t, "rows": len(out)}


def _prices(url: str):  # type: ignore[no-untyped-def]
    from procurement.db import catalog, make_engine, open_session
    from procurement.db.history import load_prices

    with open_session(make_engine(url)) as s:
        df = load_prices(s, catalog.get_tenant(s, "bench").id)
    df = df.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
    df["ds"] = df["ds"].astype("datetime64[ns]")
    return df[["unique_id", "ds", "y"]]


def phase_mlforecast(url: str) -> dict:
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd
    from mlforecast.target_transforms import Differences

    from procurement.forecast.model import ModelParams

    df = _prices(url)
    t = time.perf_counter()
    fcst = MLForecast(
        models={"lgbm": ModelParams().lgbm()},
        freq="D",
        lags=[1, 2, 7, 14, 21, 28],
        lag_transforms={1: [RollingMean(7), RollingMean(28), RollingStd(28)]},
        date_features=["dayofweek", "month", "dayofyear"],
        target_transforms=[Differences([1])],
    )
    fcst.fit(df, static_features=[])
    fit = time.perf_counter() - t
    t = time.perf_counter()
    fcst.predict(HORIZON)
    return {"seconds": fit, "predict_seconds": time.perf_counter() - t, "rows": len(df)}


def phase_mlforecast_same(url: str) -> dict:
    """mlforecast alone doing the retrain's modelling work with its own API: the same two
    forecasters (features, target transforms, LightGBM settings), each fitted on the same number
    of rows sampled from its whole ``preprocess`` output, and each backtested by
    ``cross_validation`` over the same windows on the same 500-product sample; no drivers,
    calibration, advice policy or database."""
    import numpy as np

    from procurement.forecast.features import spec_for
    from procurement.forecast.model import (
        ModelParams,
        history_to_keep,
        make_forecaster,
        make_level_forecaster,
    )

    df = _prices(url)
    spec, params = spec_for("D"), ModelParams()
    t = time.perf_counter()
    ids = df["unique_id"].unique()
    rng = np.random.default_rng(params.seed)
    if len(ids) > params.backtest_series:
        ids = rng.choice(ids, params.backtest_series, replace=False)
    sample = df[df["unique_id"].isin(ids)]
    params = params.for_rows(len(df))  # the retrain's schedule, for the backtest and the fits
    for make in (make_forecaster, make_level_forecaster):
        make(spec, params).cross_validation(
            sample,
            n_windows=params.conformal_windows,
            h=HORIZON,
            refit=False,  # as the retrain: one fit per 16 weeks of windows
            static_features=[],
        )
    cv = time.perf_counter() - t
    for make in (make_forecaster, make_level_forecaster):
        fcst = make(spec, params)
        feats = fcst.preprocess(df, static_features=[], keep_last_n=history_to_keep(fcst, spec))
        if len(feats) > params.max_train_rows:
            feats = feats.sample(params.max_train_rows, random_state=params.seed)
        fcst.fit_models(feats[fcst.ts.features_order_], feats["y"].to_numpy())
        del feats
    return {"seconds": time.perf_counter() - t, "backtest_seconds": cv, "rows": len(df)}


def phase_statsforecast(url: str, model: str) -> dict:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    df = _prices(url)
    n_all = df["unique_id"].nunique()
    scale = 1.0
    if model == "ets":
        ids = sorted(df["unique_id"].unique())[:ETS_SAMPLE]
        df = df[df["unique_id"].isin(ids)]
        scale = n_all / len(ids)
        m = AutoETS(season_length=7)
    else:
        m = SeasonalNaive(season_length=7)
    t = time.perf_counter()
    StatsForecast(models=[m], freq="D", n_jobs=1).forecast(df=df, h=HORIZON)
    sec = time.perf_counter() - t
    return {"seconds": sec * scale, "measured_seconds": sec, "scaled": scale != 1.0}


def phase_accuracy(url: str, full: str, back: str = "0") -> dict:
    """Holdout of the last HORIZON days (of the data without its last ``back`` days): MASE of
    the retrain's fit (sampled rows) or the full fit."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from procurement.config import Settings
    from procurement.db import catalog, make_engine, open_session
    from procurement.forecast.model import fit_price_model
    from procurement.training import load_training_data, params_from

    with open_session(make_engine(url)) as s:
        data = load_training_data(s, catalog.get_tenant(s, "bench").id, 730)
    last = data.prices["ds"].max() - pd.Timedelta(days=int(back))
    cut = last - pd.Timedelta(days=HORIZON)
    actual = data.prices[(data.prices["ds"] > cut) & (data.prices["ds"] <= last)]
    data.prices = data.prices[data.prices["ds"] <= cut]
    if data.sales is not None:
        data.sales = data.sales[data.sales["ds"] <= cut]
    params = params_from(Settings())
    if full == "full":
        params = dataclasses.replace(params, max_train_rows=10**10)
    t = time.perf_counter()
    model = fit_price_model(data, "D", HORIZON, params)
    sec = time.perf_counter() - t
    fc = model.predict(HORIZON).rename(columns={"sku": "unique_id", "date": "ds"})
    m = fc.merge(actual, on=["unique_id", "ds"])
    train = data.prices.sort_values(["unique_id", "ds"])
    scale = train.groupby("unique_id")["y"].apply(lambda y: np.mean(np.abs(np.diff(y))))
    err = (m["y_pred"] - m["y"]).abs().groupby(m["unique_id"]).mean()
    mase = float((err / scale.reindex(err.index)).mean())
    naive = m["unique_id"].map(train.groupby("unique_id")["y"].last())
    nerr = (naive - m["y"]).abs().groupby(m["unique_id"]).mean()
    return {
        "seconds": sec,
        "mase": mase,
        "naive_mase": float((nerr / scale.reindex(nerr.index)).mean()),
    }


PHASES = {
    "seed": phase_seed,
    "read": phase_read,
    "retrain": phase_retrain,
    "predict": phase_predict,
    "mlforecast": phase_mlforecast,
    "mlforecast_same": phase_mlforecast_same,
    "statsforecast": phase_statsforecast,
    "accuracy": phase_accuracy,
}


def _run(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1][:200] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mariadb(n: int) -> str | None:
    from sqlalchemy import create_engine, text

    try:
        root = create_engine(MARIADB_ROOT)
        with root.begin() as c:
            name = f"procurement_bench_{n}"
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            c.execute(text(f"CREATE DATABASE {name}"))
        return f"{MARIADB_ROOT}/{name}"
    except Exception:
        return None


def _machine() -> str:
    import lightgbm
    import mlforecast

    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; Python {platform.python_version()}, "
        f"mlforecast {mlforecast.__version__}, lightgbm {lightgbm.__version__}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--products", type=int, action="append")
    p.add_argument("--keep-db", help="folder to keep the seeded SQLite files in and reuse")
    p.add_argument("--no-mariadb", action="store_true")
    p.add_argument(
        "--mariadb-max", type=int, default=1000, help="MariaDB rows only up to this many products"
    )
    p.add_argument("--no-holdout", action="store_true", help="skip the sampled-vs-full holdout")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.md"))
    p.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        name, *rest = args.phase
        result = PHASES[name](*rest)
        result["peak_mb"] = round(_peak_mb())
        # a child process (the sales read beside the prices) has its own peak
        result["child_peak_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        )
        print(json.dumps(result, default=str))
        return

    rows: list[tuple[str, str, str, str]] = []
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()

    def row(n: int, step: str, r: dict, note: str = "") -> None:
        if "error" in r:
            sec, mb, note = "-", "-", f"failed: {r['error']}"
        else:
            sec, mb = f"{r['seconds']:.2f}", f"{r.get('peak_mb', '-')}"
            if r.get("child_peak_mb"):
                note = f"{note}; child process peak {r['child_peak_mb']} MB".lstrip("; ")
        rows.append((f"{n:,}", step, sec, mb + (f" | {note}" if note else " |")))
        print(f"{n:>7,} {step:<44} {sec:>9} {mb:>8} {note}", flush=True)

    print(f"{'products':>7} {'step':<44} {'seconds':>9} {'peak MB':>8}")
    for n in args.products or [1000, 10000]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.keep_db or tmp)
            folder.mkdir(parents=True, exist_ok=True)
            db = folder / f"bench-{n}.db"
            url = f"sqlite:///{db}"
            models = f"{tmp}/models"
            if not db.exists():
                row(n, "seed, SQLite", _run("seed", url, str(n)))
            maria = None if args.no_mariadb or n > args.mariadb_max else _mariadb(n)
            if maria:
                row(n, "seed, MariaDB", _run("seed", maria, str(n)))
            row(n, "database read, SQLite", _run("read", url))
            if maria:
                row(n, "database read, MariaDB", _run("read", maria))
            rt = _run("retrain", url, models)
            note = ""
            if "mase" in rt and rt["mase"] is not None:
                note = f"backtest MASE {rt['mase']:.3f} (naive {rt['naive_mase']:.3f})"
            row(n, "full retrain, SQLite -> model file", rt, note)
            for step, sec in rt.get("steps", {}).items():
                if step == "start" or step.startswith("model "):
                    continue
                rows.append((f"{n:,}", f"&nbsp;&nbsp;{step}", f"{sec:.2f}", " |"))
                print(f"{'':>7}   {step[:42]:<42} {sec:>9.2f}")
            row(n, "predict all products, 14 days, intervals", _run("predict", models, "predict"))
            row(n, "advice for all products", _run("predict", models, "advice"))
            base = _run("mlforecast", url)
            row(n, "baseline: mlforecast alone, fit (all rows)", base)
            if "predict_seconds" in base:
                row(n, "baseline: mlforecast alone, predict", {"seconds": base["predict_seconds"]})
            same = _run("mlforecast_same", url)
            note = ""
            if "seconds" in same and "seconds" in rt:
                note = (
                    f"the retrain's two models and backtest, plain API; retrain / this: "
                    f"{rt['seconds'] / same['seconds']:.2f}x"
                )
            row(n, "baseline: mlforecast alone, the same work", same, note)
            row(n, "baseline: statsforecast SeasonalNaive(7)", _run("statsforecast", url, "naive"))
            ets = _run("statsforecast", url, "ets")
            note = ""
            if ets.get("scaled"):
                note = f"**scaled** from {ETS_SAMPLE} series ({ets['measured_seconds']:.1f} s)"
            row(n, "baseline: statsforecast AutoETS(7)", ets, note)
            from procurement.forecast.model import ModelParams

            if n * DAYS > ModelParams().max_train_rows and not args.no_holdout:
                for kind in ("sampled", "full"):
                    acc = _run("accuracy", url, kind)
                    note = ""
                    if "mase" in acc:
                        note = f"holdout MASE {acc['mase']:.3f} (naive {acc['naive_mase']:.3f})"
                    row(n, f"holdout: fit with {kind} rows", acc, note)
    load_after = os.getloadavg()
    text = [
        "# Benchmarks",
        "",
        f"`scripts/benchmark.py`, run {started:%Y-%m-%d %H:%M} UTC on {_machine()}.",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.1f}' for x in load_after)} (above 2 on 2 cores, other work "
        "shared the machine and the times are upper bounds).",
        "",
        "| products | step | seconds | peak MB | note |",
        "|---:|---|---:|---:|---|",
        *[f"| {a} | {b} | {c} | {d}" for a, b, c, d in rows],
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and "<!-- benchmark table -->" in out.read_text():
        head, _, tail = out.read_text().partition("<!-- benchmark table -->")
        tail = tail.partition("<!-- end benchmark table -->")[2]
        body = "\n".join(text[2:])
        out.write_text(
            f"{head}<!-- benchmark table -->\n{body}\n<!-- end benchmark table -->{tail}"
        )
    else:
        out.write_text("\n".join(text))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
