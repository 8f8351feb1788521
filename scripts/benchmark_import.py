"""Benchmark importing a 1,000,000-row price CSV into SQLite through the validated, transactional,
idempotent import path, beside a plain ``pandas.read_csv`` + ``DataFrame.to_sql`` of the same file
(no validation, no upsert) as the baseline. Each runs in its own subprocess (peak memory is its own).

    python scripts/benchmark_import.py [--rows 1000000]
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


def phase(kind: str, csv: str, db: str) -> dict:
    t = time.perf_counter()
    if kind == "baseline":
        import sqlite3

        import pandas as pd

        df = pd.read_csv(csv)
        with sqlite3.connect(db) as con:
            df.to_sql("prices", con, index=False, chunksize=50_000)
        n = len(df)
    else:
        from procurement import actions
        from procurement.auth import Principal
        from procurement.db import make_engine, migrate, open_session

        engine = make_engine(f"sqlite:///{db}")
        migrate(engine)
        t = time.perf_counter()
        with open_session(engine) as s:
            res = actions.import_price_file(Principal.system(), session=s, tenant="bench", path=csv)
        counts = res.counts
        n = counts.added + counts.updated + counts.unchanged
        if kind == "import-again":
            t = time.perf_counter()
            with open_session(engine) as s:
                res = actions.import_price_file(
                    Principal.system(), session=s, tenant="bench", path=csv
                )
            counts = res.counts
            assert counts.added == 0
    return {
        "seconds": time.perf_counter() - t,
        "rows": n,
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(phase(*args.phase)))
        return
    from procurement.data.synthetic import generate

    products = max(1, args.rows // 1000)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "prices.csv"
        data = generate(products, 1000, seed=1).prices
        data[["sku", "date", "price", "name", "supplier", "quantity"]].to_csv(csv, index=False)
        size = csv.stat().st_size / 1e6
        print(f"file: {len(data):,} rows, {size:.0f} MB")
        for kind, label in (
            ("baseline", "baseline: pandas read_csv + to_sql"),
            ("import", "procurement import (validate + upsert)"),
            ("import-again", "same file again (idempotent no-op)"),
        ):
            db = Path(tmp) / f"{kind}.db"
            out = subprocess.run(
                [sys.executable, __file__, "--phase", kind, str(csv), str(db)],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{label:<44} {r['seconds']:>7.1f} s {r['peak_mb']:>7} MB  ({r['rows']:,} rows)")
        print("target: 1,000,000 rows in under 60 s")


if __name__ == "__main__":
    main()
