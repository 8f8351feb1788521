"""Benchmark a full retrain (load from SQLite, features, backtest, train, save) and
``predict_prices()`` for N products x 730 days, beside mlforecast alone on the same data.

Each measurement runs in a fresh subprocess so peak memory (max RSS) belongs to that step.

    python scripts/benchmark_train.py                 # 1,000 and 10,000 products
    python scripts/benchmark_train.py --products 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 730


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_seed(db: str, products: int) -> dict:
    from procurement import demo
    from procurement.db import make_engine, migrate, open_session

    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    t = time.perf_counter()
    with open_session(engine) as s, s.begin():
        demo.seed_synthetic(s, "bench", products, DAYS)
    return {"seconds": time.perf_counter() - t}


def phase_retrain(db: str, models: str) -> dict:
    from procurement.config import Settings
    from procurement.db import make_engine, open_session
    from procurement.training import train_global_lgbm_model

    settings = Settings(database_url=f"sqlite:///{db}", model_dir=Path(models))
    engine = make_engine(settings.database_url)
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    last = [t0, "start"]

    def progress(frac: float, msg: str) -> None:
        now = time.perf_counter()
        steps[last[1]] = round(now - last[0], 2)
        last[0], last[1] = now, msg.split(" on ")[0]

    with open_session(engine) as s, s.begin():
        res = train_global_lgbm_model(s, "bench", settings, progress=progress)
    total = time.perf_counter() - t0
    return {"seconds": total, "steps": steps, "version": res.version}


def phase_predict(models: str) -> dict:
    from procurement.forecast import store
    from procurement.forecast.predict import predict_prices

    stored = store.load_version(Path(models), "bench")
    t = time.perf_counter()
    fc = predict_prices(stored.model)
    return {"seconds": time.perf_counter() - t, "rows": len(fc)}


def phase_mlforecast(db: str) -> dict:
    """Baseline: mlforecast alone, same LightGBM settings and lags, data already in memory,
    no database, no drivers, no calibration or backtest, nothing saved."""
    import pandas as pd
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean, RollingStd
    from mlforecast.target_transforms import Differences

    from procurement.db import make_engine, open_session
    from procurement.db.catalog import get_tenant
    from procurement.db.history import load_prices
    from procurement.forecast.model import ModelParams

    engine = make_engine(f"sqlite:///{db}")
    with open_session(engine) as s:
        df = load_prices(s, get_tenant(s, "bench").id)
    df = df.rename(columns={"sku": "unique_id", "date": "ds", "price": "y"})
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
    fcst.predict(14)
    return {
        "seconds": fit,
        "predict_seconds": time.perf_counter() - t,
        "rows": len(df),
        "_": pd.__version__,
    }


def _run_phase(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--products", type=int, action="append")
    p.add_argument(
        "--keep-db",
        help="folder to keep seeded databases in and reuse (seeding 10,000 products takes minutes)",
    )
    p.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        name, *rest = args.phase
        fn = {
            "seed": phase_seed,
            "retrain": phase_retrain,
            "predict": phase_predict,
            "mlforecast": phase_mlforecast,
        }[name]
        rest = [int(x) if x.isdigit() else x for x in rest]
        result = fn(*rest)
        result["peak_mb"] = round(_peak_mb())
        print(json.dumps(result, default=str))
        return

    sizes = args.products or [1000, 10000]
    print(f"{'products':>9} {'step':<34} {'seconds':>8} {'peak MB':>8}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db, models = f"{args.keep_db or tmp}/bench-{n}.db", f"{tmp}/models"
            if not Path(db).exists():
                seed = _run_phase("seed", db, str(n))
                print(
                    f"{n:>9} {'(seed the database, not timed)':<34} {seed['seconds']:>8.1f} {seed['peak_mb']:>8}"
                )
            base = _run_phase("mlforecast", db)
            print(
                f"{n:>9} {'baseline: mlforecast fit, in memory':<34} {base['seconds']:>8.1f} {base['peak_mb']:>8}"
            )
            print(f"{n:>9} {'baseline: mlforecast predict 14':<34} {base['predict_seconds']:>8.2f}")
            rt = _run_phase("retrain", db, models)
            print(
                f"{n:>9} {'full retrain (db->model file)':<34} {rt['seconds']:>8.1f} {rt['peak_mb']:>8}"
            )
            for step, sec in rt["steps"].items():
                print(f"{'':>9}   {step[:32]:<32} {sec:>8.1f}")
            pr = _run_phase("predict", models)
            print(
                f"{n:>9} {'predict_prices() all products':<34} {pr['seconds']:>8.2f} {pr['peak_mb']:>8}"
            )
            print(
                f"{'':>9}   retrain / baseline fit: {rt['seconds'] / base['seconds']:.1f}x; targets: retrain < 60 s, predict < 10 s (10,000 products)"
            )


if __name__ == "__main__":
    main()
