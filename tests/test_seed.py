"""Seeding in chunks with bulk inserts stores exactly what the old path stored (the baseline of
scripts/benchmark_seed.py): the same rows, ids and values in every table it writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import END
from sqlalchemy import Engine

from procurement import demo
from procurement.db import history, make_engine, migrate, open_session

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "tenant": ["id", "slug", "name"],
    "supplier": None,
    "product": None,
    "price_observation": None,
    "sale": None,
    "driver_observation": None,
    "stock": ["id", "tenant_id", "product_id", "on_hand", "lead_time_days"],
    "import_run": ["id", "tenant_id", "source", "rows_added", "rows_updated", "rows_unchanged"],
}


def _baseline():
    spec = importlib.util.spec_from_file_location(
        "benchmark_seed", ROOT / "scripts/benchmark_seed.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["benchmark_seed"] = mod
    spec.loader.exec_module(mod)
    return mod


def _engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return engine


def _tables(engine: Engine) -> dict[str, pd.DataFrame]:
    out = {}
    with engine.connect() as conn:
        for name, cols in TABLES.items():
            df = pd.read_sql_table(name, conn)
            df = df[cols] if cols else df
            out[name] = df.sort_values("id", ignore_index=True)
    return out


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # several chunks of products and several groups inside store_prices, on a small catalog
    monkeypatch.setattr(demo, "SEED_CHUNK_PRODUCTS", 7)
    monkeypatch.setattr(history, "PRODUCT_GROUP_ROWS", 500)


def test_fast_seed_stores_what_the_old_path_stored(tmp_path: Path, small_chunks) -> None:
    bench = _baseline()
    old, new = _engine(tmp_path / "old.db"), _engine(tmp_path / "new.db")
    with open_session(old) as s, s.begin():
        old_counts = bench.baseline_seed(s, "demo", 30, 90, seed=5, end=END)
    steps: list[tuple[int, int]] = []
    with open_session(new) as s, s.begin():
        new_counts = demo.seed_synthetic(
            s, "demo", 30, 90, seed=5, end=END, progress=lambda d, t: steps.append((d, t))
        )
    assert new_counts == old_counts == history.UpsertCounts(added=30 * 90)
    assert steps[-1] == (30 * 90, 30 * 90) and len(steps) > 1
    a, b = _tables(old), _tables(new)
    for name in TABLES:
        assert len(a[name]) > 0, name
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_seeding_again_changes_nothing(tmp_path: Path, small_chunks) -> None:
    engine = _engine(tmp_path / "s.db")
    with open_session(engine) as s, s.begin():
        demo.seed_synthetic(s, "demo", 12, 80, seed=5, end=END)
    first = _tables(engine)
    with open_session(engine) as s, s.begin():
        again = demo.seed_synthetic(s, "demo", 12, 80, seed=5, end=END)
    assert again == history.UpsertCounts(unchanged=12 * 80)
    second = _tables(engine)
    for name in ("product", "price_observation", "sale", "driver_observation"):
        pd.testing.assert_frame_equal(first[name], second[name], obj=name)
