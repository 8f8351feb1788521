"""Seeding N synthetic products x 730 days into a fresh SQLite file: the library's path
(``demo.seed_synthetic``) against the old one as the named baseline, in the same run.

The baseline is the code before the seeding work: the generator of commit ``BASELINE_COMMIT``
(read from git: its text columns held one string object per row), the whole table validated at
once, and every insert through SQLAlchemy's executemany of per-row dictionaries, with the stored
rows of each group of products read back first (``baseline_seed`` below, kept verbatim).
``tests/test_seed.py`` checks that both store the same rows.

Each measurement runs in a fresh subprocess, so its peak memory (max RSS) is its own.

    python scripts/benchmark_seed.py                      # 1,000 and 10,000 products
    python scripts/benchmark_seed.py --products 1000 --skip-baseline
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
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = 730
END = dt.date(2026, 6, 30)
BASELINE_COMMIT = "1fa4985"  # before the seeding work (issue 17)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_generator() -> Callable:
    """``generate`` as it was at ``BASELINE_COMMIT``; the current one when git cannot say."""
    try:
        src = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:procurement/data/synthetic.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        from procurement.data.synthetic import generate

        return generate
    mod = types.ModuleType("synthetic_baseline")
    exec(compile(src, "synthetic_baseline.py", "exec"), mod.__dict__)
    return mod.generate


# --- the old storage path, verbatim but for names -------------------------------------------------


def _baseline_upsert(session, table, key_cols, value_col, incoming, existing, extra):  # type: ignore[no-untyped-def]
    import numpy as np

    from procurement.db.history import CHUNK, UpsertCounts

    merged = incoming.merge(existing, on=key_cols, how="left", suffixes=("", "_old"))
    is_new = merged["id"].isna().to_numpy()
    old = merged[f"{value_col}_old"].to_numpy(dtype=float)
    new = merged[value_col].to_numpy(dtype=float)
    changed = ~is_new & ~np.isclose(old, new, rtol=0, atol=1e-9)
    conn = session.connection()
    inserts = merged.loc[is_new, [*key_cols, value_col]]
    for k, v in extra.items():
        inserts[k] = v
    records = inserts.to_dict("records")
    for start in range(0, len(records), CHUNK):
        conn.execute(table.insert(), records[start : start + CHUNK])
    if changed.any():
        from sqlalchemy import bindparam, update

        ups = merged.loc[changed, ["id", value_col]].rename(columns={"id": "_id"})
        ups["_id"] = ups["_id"].astype(int)
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({value_col: bindparam(value_col)})
        )
        conn.execute(stmt, ups.to_dict("records"))
    return UpsertCounts(int(is_new.sum()), int(changed.sum()), int((~is_new & ~changed).sum()))


def _baseline_load_existing(session, model, value, tenant_id, pids):  # type: ignore[no-untyped-def]
    import pandas as pd
    from sqlalchemy import select

    stmt = select(model.id, model.product_id, model.date, getattr(model, value)).where(
        model.tenant_id == tenant_id
    )
    stmt = stmt.where(model.product_id.in_([int(p) for p in pids]))
    rows = session.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["id", "product_id", "date", f"{value}_old"])
    df["date"] = pd.to_datetime(df["date"]).dt.date
    return df


def _baseline_store_prices(session, tenant_id, prices):  # type: ignore[no-untyped-def]
    from procurement.db.catalog import ensure_products
    from procurement.db.history import PRODUCT_GROUP_ROWS, UpsertCounts, _product_groups
    from procurement.db.models import PriceObservation, Sale

    ids = ensure_products(session, tenant_id, prices)
    df = prices.assign(product_id=prices["sku"].map(ids))
    counts = UpsertCounts()
    groups = _product_groups(df["product_id"], max_rows=PRODUCT_GROUP_ROWS, max_products=400)
    for pids in groups:
        part = df[df["product_id"].isin(pids)] if len(groups) > 1 else df
        existing = _baseline_load_existing(session, PriceObservation, "price", tenant_id, pids)
        counts = counts + _baseline_upsert(
            session,
            PriceObservation.__table__,
            ["product_id", "date"],
            "price",
            part[["product_id", "date", "price"]],
            existing,
            {"tenant_id": tenant_id},
        )
        if "quantity" in part.columns:
            q = part.loc[part["quantity"].notna(), ["product_id", "date", "quantity"]]
            if len(q):
                existing_q = _baseline_load_existing(session, Sale, "quantity", tenant_id, pids)
                _baseline_upsert(
                    session,
                    Sale.__table__,
                    ["product_id", "date"],
                    "quantity",
                    q,
                    existing_q,
                    {"tenant_id": tenant_id},
                )
    return counts


def _baseline_store_drivers(session, tenant_id, drivers):  # type: ignore[no-untyped-def]
    import pandas as pd
    from sqlalchemy import select

    from procurement.db.models import DriverObservation

    rows = session.execute(
        select(
            DriverObservation.id,
            DriverObservation.name,
            DriverObservation.date,
            DriverObservation.value,
        ).where(DriverObservation.tenant_id == tenant_id)
    ).all()
    existing = pd.DataFrame(rows, columns=["id", "name", "date", "value_old"])
    existing["date"] = pd.to_datetime(existing["date"]).dt.date
    return _baseline_upsert(
        session,
        DriverObservation.__table__,
        ["name", "date"],
        "value",
        drivers[["name", "date", "value"]],
        existing,
        {"tenant_id": tenant_id},
    )


def baseline_seed(session, tenant, n_products, n_days, seed=7, end=None, generate=None):  # type: ignore[no-untyped-def]
    """``demo.seed_synthetic`` before the seeding work (``generate``: the generator to use)."""
    from procurement.data.importers import validate_prices
    from procurement.db import catalog, history

    if generate is None:
        from procurement.data.synthetic import generate
    data = generate(n_products, n_days, seed, end=end)
    ten = catalog.get_or_create_tenant(
        session, tenant, "Demo Manufacturing Co." if tenant == "demo" else None
    )
    prices = validate_prices(data.prices, source="synthetic")
    counts = _baseline_store_prices(session, ten.id, prices)
    _baseline_store_drivers(session, ten.id, data.drivers)
    catalog.store_stock(session, ten.id, data.stock)
    history.record_import(session, ten.id, f"synthetic seed={seed} {n_products}x{n_days}", counts)
    return counts


# --- measurements ---------------------------------------------------------------------------------


def phase(path: str, db: str, products: int) -> dict:
    from procurement import demo
    from procurement.db import make_engine, migrate, open_session

    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    generate = baseline_generator() if path == "baseline" else None
    t = time.perf_counter()
    with open_session(engine) as s, s.begin():
        if path == "baseline":
            counts = baseline_seed(s, "bench", products, DAYS, end=END, generate=generate)
        else:
            counts = demo.seed_synthetic(s, "bench", products, DAYS, end=END)
    return {"seconds": time.perf_counter() - t, "rows": counts.added}


def _run(path: str, products: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--phase", path, str(Path(tmp) / "s.db"), str(products)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        path, db, n = args.phase
        res = phase(path, db, int(n))
        res["peak_mb"] = _peak_mb()
        print(json.dumps(res))
        return
    print(
        f"# seeding N x {DAYS} days into SQLite; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; load before: {os.getloadavg()[0]:.1f}"
    )
    print(f"{'products':>9} {'path':<9} {'rows':>10} {'seconds':>9} {'peak MB':>9}")
    for n in args.products:
        paths = ["library"] if args.skip_baseline else ["baseline", "library"]
        for path in paths:
            r = _run(path, n)
            print(
                f"{n:>9,} {path:<9} {r['rows']:>10,} {r['seconds']:>9.1f} {r['peak_mb']:>9.0f}",
                flush=True,
            )
    print(f"# load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
